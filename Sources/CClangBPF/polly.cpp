// Debian builds LLVM 14 with Polly linked into its tools, so clang's optimisation pipeline asks for
// Polly's pass-builder hooks by name; Polly itself is shipped only as a plugin (LLVMPolly.so), not as
// a static archive. Linking clang statically therefore needs this symbol: a plugin that registers
// no passes, which is what clang gets anyway unless -mllvm -polly is given (the worker never does).
#include <llvm/Passes/PassPlugin.h>

namespace {
void registerNothing(llvm::PassBuilder &) {}
} // namespace

llvm::PassPluginLibraryInfo getPollyPluginInfo() {
    return {LLVM_PLUGIN_API_VERSION, "Polly", LLVM_VERSION_STRING, registerNothing};
}
