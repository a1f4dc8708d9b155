#include "clang_bpf.h"
