# A stand-in for BCC's Python package, first on PYTHONPATH while generate.py runs a BCC tool.
#
# It is the real package (its submodules and its own __init__ code run unchanged) with BPF
# replaced: BPF(...) records the C text exactly as BCC would compile it (the tool's substitutions
# done, src_file read, USDT argument code in front), its cflags, and then every program the tool
# loads or attaches (with the attach call, so tests can attach it with -a). It never compiles or
# loads anything. The questions tools ask about the kernel get the answers of the 6.1 test kernel
# (../shared/testkernel), whose symbols this machine cannot see.
import json
import os
import sys

_REAL = os.environ.get("BCC_CORPUS_REAL_PACKAGE", "/usr/lib/python3/dist-packages/bcc")
__path__ = [_REAL]
with open(os.path.join(_REAL, "__init__.py")) as _file:
    exec(compile(_file.read(), os.path.join(_REAL, "__init__.py"), "exec"))

_RealBPF = BPF  # noqa: F821 (defined by the real package's code above)
_RECORD = os.environ["BCC_CORPUS_RECORD"]

# The 6.1 test kernel (x86_64_defconfig + kvm_guest.config, no lockdep, no ZFS): what its
# kallsyms, available_filter_functions, tracefs and struct layouts say about the names the
# bpfcc-tools 0.26 ask about. Names not listed are taken to exist.
_MISSING_FUNCTIONS = {
    b"blk_start_request", b"zpl_iter", b"zpl_aio", b"tcp_drop", b"__do_page_cache_readahead",
    b"mutex_lock_nested", b"account_page_dirtied",
}
_MISSING_TRACEPOINTS = {("kmem", "kmalloc_node")}
_MISSING_FIELDS = {("request", "rq_disk")}

_state = {"texts": [], "programs": []}


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if value is None else str(value)


def _save():
    with open(_RECORD + ".tmp", "w") as out:
        json.dump(_state, out, indent=1, sort_keys=True)
    os.replace(_RECORD + ".tmp", _RECORD)


def _program(call, fn_name, **where):
    entry = {"call": call, "function": _text(fn_name)}
    entry.update({key: _text(value) if isinstance(value, (bytes, str)) else value
                  for key, value in where.items() if value not in (None, b"", "")})
    _state["programs"].append(entry)
    _save()


def finish(*_args, **_kwargs):
    """Where the tool would start waiting for events: the record is complete."""
    _save()
    os._exit(0)


class _Anything(object):
    """What a table access gives: accepts every use, holds nothing."""
    def __getattr__(self, _name): return _Anything()
    def __call__(self, *_args, **_kwargs): return _Anything()
    def __getitem__(self, _key): return _Anything()
    def __setitem__(self, _key, _value): pass
    def __delitem__(self, _key): pass
    def __iter__(self): return iter(())
    def __len__(self): return 0
    def __int__(self): return 0
    def __index__(self): return 0


class _Function(object):
    def __init__(self, bpf, name, prog_type):
        self.bpf, self.name, self.fd, self.prog_type = bpf, name, -1, prog_type


class BPF(_RealBPF):
    def __init__(self, src_file=b"", hdr_file=b"", text=None, debug=0, cflags=[], usdt_contexts=[],
                 allow_rlimit=True, device=None, attach_usdt_ignore_pid=False):
        text = _assert_is_bytes(text) or b""  # noqa: F821
        if src_file:
            with open(_RealBPF._find_file(_assert_is_bytes(src_file)), "rb") as file:  # noqa: F821
                text = file.read()
        usdt = []
        if usdt_contexts:
            array = (ct.c_void_p * len(usdt_contexts))()  # noqa: F821
            for index, context in enumerate(usdt_contexts):
                array[index] = ct.c_void_p(context.get_context())  # noqa: F821
            generated = lib.bcc_usdt_genargs(array, len(usdt_contexts))  # noqa: F821
            text = (generated or b"") + text
            for context in usdt_contexts:
                usdt.append({"pid": getattr(context, "pid", None), "path": _text(getattr(context, "path", None)),
                             "enabled": [{"probe": probe, "function": function}
                                         for probe, function in getattr(context, "_enabled", [])]})
        self.funcs, self.tables, self.module, self.debug = {}, {}, None, debug
        self.kprobe_fds, self.uprobe_fds, self.tracepoint_fds, self.raw_tracepoint_fds = {}, {}, {}, {}
        self.perf_buffers, self.open_perf_events = {}, {}
        self._state_index = len(_state["texts"])
        _state["texts"].append({"text": _text(text), "cflags": [_text(flag) for flag in cflags],
                                "usdt_contexts": usdt})
        for context in usdt_contexts:
            for probe, function in getattr(context, "_enabled", []):
                _program("usdt", function, probe=probe, pid=getattr(context, "pid", None),
                         path=_text(getattr(context, "path", None)))
        _save()

    def cleanup(self): pass
    def __del__(self): pass

    def load_func(self, func_name, prog_type, device=None, attach_type=-1):
        name = _text(func_name)
        if name not in self.funcs:
            self.funcs[name] = _Function(self, name, prog_type)
            _program("load_func", name, prog_type=prog_type)
        return self.funcs[name]

    def load_funcs(self, prog_type=_RealBPF.KPROBE):
        _program("load_funcs", "*", prog_type=prog_type)
        return []

    def attach_kprobe(self, event=b"", event_off=0, fn_name=b"", event_re=b""):
        _program("attach_kprobe", fn_name, event=event, event_re=event_re)
        return self

    def attach_kretprobe(self, event=b"", fn_name=b"", event_re=b"", maxactive=0):
        _program("attach_kretprobe", fn_name, event=event, event_re=event_re)
        return self

    def attach_tracepoint(self, tp=b"", tp_re=b"", fn_name=b""):
        _program("attach_tracepoint", fn_name, tp=tp, tp_re=tp_re)
        return self

    def attach_raw_tracepoint(self, tp=b"", fn_name=b""):
        _program("attach_raw_tracepoint", fn_name, tp=tp)
        return self

    def attach_kfunc(self, fn_name=b""):
        _program("attach_kfunc", fn_name)
        return self

    def attach_kretfunc(self, fn_name=b""):
        _program("attach_kretfunc", fn_name)
        return self

    def attach_lsm(self, fn_name=b""):
        _program("attach_lsm", fn_name)
        return self

    def attach_uprobe(self, name=b"", sym=b"", sym_re=b"", addr=None, fn_name=b"", pid=-1, sym_off=0):
        _program("attach_uprobe", fn_name, name=name, sym=sym, sym_re=sym_re, addr=addr, pid=pid)
        return self

    def attach_uretprobe(self, name=b"", sym=b"", sym_re=b"", addr=None, fn_name=b"", pid=-1):
        _program("attach_uretprobe", fn_name, name=name, sym=sym, sym_re=sym_re, addr=addr, pid=pid)
        return self

    def attach_perf_event(self, ev_type=-1, ev_config=-1, fn_name=b"", sample_period=0, sample_freq=0,
                          pid=-1, cpu=-1, group_fd=-1):
        _program("attach_perf_event", fn_name, ev_type=ev_type, ev_config=ev_config)
        return self

    def attach_perf_event_raw(self, attr=-1, fn_name=b"", pid=-1, cpu=-1, group_fd=-1):
        _program("attach_perf_event", fn_name)
        return self

    def attach_xdp(dev, fn, flags=0):
        _program("attach_xdp", fn.name, dev=dev)
    attach_xdp = staticmethod(attach_xdp)

    def attach_raw_socket(fn, dev):
        _program("attach_raw_socket", fn.name, dev=dev)
    attach_raw_socket = staticmethod(attach_raw_socket)

    def attach_func(fn, attachable_fd, attach_type, flags=0):
        _program("attach_func", fn.name, attach_type=attach_type)
    attach_func = staticmethod(attach_func)

    def detach_kprobe(self, *args, **kwargs): pass
    def detach_kretprobe(self, *args, **kwargs): pass
    def num_open_kprobes(self): return 1
    def num_open_uprobes(self): return 1
    def num_open_tracepoints(self): return 1

    def get_table(self, name, keytype=None, leaftype=None, reducer=None): return _Anything()
    def __getitem__(self, key): return _Anything()
    def __setitem__(self, key, leaf): pass
    def __delitem__(self, key): pass
    def __iter__(self): return iter(())
    def __len__(self): return 0

    perf_buffer_poll = finish
    ring_buffer_poll = finish
    ring_buffer_consume = finish
    kprobe_poll = finish
    trace_print = finish
    trace_fields = finish
    trace_readline = finish

    def get_syscall_fnname(self, name):
        return b"__x64_sys_" + _assert_is_bytes(name)  # noqa: F821

    def get_syscall_prefix(self):
        return b"__x64_sys_"

    @staticmethod
    def support_kfunc(): return False
    @staticmethod
    def support_lsm(): return False
    @staticmethod
    def support_raw_tracepoint(): return True
    @staticmethod
    def support_raw_tracepoint_in_module(): return True

    @staticmethod
    def tracepoint_exists(category, event):
        return (_text(category), _text(event)) not in _MISSING_TRACEPOINTS

    @staticmethod
    def kernel_struct_has_field(struct_name, field_name):
        return 0 if (_text(struct_name), _text(field_name)) in _MISSING_FIELDS else 1

    @staticmethod
    def get_kprobe_functions(event_re):
        event_re = _assert_is_bytes(event_re)  # noqa: F821
        if any(c in event_re for c in b"*^$[]\\|()+?"):
            return [name for name in (b"vfs_read", b"vfs_write", b"vfs_open") if __import__("re").fullmatch(event_re, name)]
        return [] if event_re in _MISSING_FUNCTIONS else [event_re]

    @staticmethod
    def ksymname(name):
        return -1 if _assert_is_bytes(name) in _MISSING_FUNCTIONS else 0xffffffff81000000  # noqa: F821

    @staticmethod
    def ksym(addr, show_module=False, show_offset=False):
        return b"[unknown]"

    @staticmethod
    def get_user_functions_and_addresses(name, sym_re):
        return [(b"main", 0x1000)]


_RealUSDT = USDT  # noqa: F821


class USDT(_RealUSDT):
    def enable_probe(self, probe, fn_name):
        result = _RealUSDT.enable_probe(self, probe, fn_name)
        self.__dict__.setdefault("_enabled", []).append((_text(probe), _text(fn_name)))
        return result
