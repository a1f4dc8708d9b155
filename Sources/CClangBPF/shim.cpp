#include "clang_bpf.h"
#include "probe_consumer.h"

#include <clang/Basic/Diagnostic.h>
#include <clang/Basic/DiagnosticOptions.h>
#include <clang/Basic/Version.h>
#include <clang/CodeGen/CodeGenAction.h>
#include <clang/Driver/Compilation.h>
#include <clang/Driver/Driver.h>
#include <clang/Driver/Job.h>
#include <clang/Frontend/CompilerInstance.h>
#include <clang/Frontend/CompilerInvocation.h>
#include <clang/Frontend/FrontendActions.h>
#include <clang/Frontend/Utils.h>
#include <clang/Lex/PreprocessorOptions.h>
#include <clang/Frontend/TextDiagnosticPrinter.h>
#include <clang/Sema/SemaConsumer.h>
#include <clang/Serialization/ASTWriter.h>
#include <clang/Serialization/InMemoryModuleCache.h>
#include <llvm/Bitstream/BitstreamWriter.h>
#include <llvm/ADT/StringMap.h>
#include <llvm/ADT/Triple.h>
#include <llvm/IR/DiagnosticInfo.h>
#include <llvm/IR/DebugInfoMetadata.h>
#include <llvm/IR/DiagnosticPrinter.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Support/ErrorHandling.h>
#include <llvm/Support/Host.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/Path.h>
#include <llvm/Support/SourceMgr.h>
#include <llvm/Support/VirtualFileSystem.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

extern "C" {
void LLVMInitializeBPFTargetInfo(void);
void LLVMInitializeBPFTarget(void);
void LLVMInitializeBPFTargetMC(void);
void LLVMInitializeBPFAsmPrinter(void);
void LLVMInitializeBPFAsmParser(void);
}

#ifndef KPROBE_RUN_CLANG_LIB_DIR
#define KPROBE_RUN_CLANG_LIB_DIR "/usr/lib/llvm-14/lib/clang"
#endif

namespace {

// The driver derives some paths from its own location; no binary needs to exist there.
const char *const DriverPath = "/usr/lib/llvm-14/bin/clang";

void fatalErrorHandler(void *, const char *reason, bool) {
    // stderr is the only channel left: the parent shows it when the worker dies.
    const char prefix[] = "kprobe-run-cc: LLVM fatal error: ";
    ssize_t ignored = write(STDERR_FILENO, prefix, sizeof prefix - 1);
    ignored = write(STDERR_FILENO, reason, strlen(reason));
    ignored = write(STDERR_FILENO, "\n", 1);
    (void)ignored;
    _exit(70);
}

// clang's builtin headers (stddef.h, stdarg.h...) live in a directory named after the exact
// version that libclang-common-14-dev installed, so it is looked up rather than assumed.
std::string findResourceDir() {
    std::string best;
    DIR *dir = opendir(KPROBE_RUN_CLANG_LIB_DIR);
    if (!dir) return best;
    while (struct dirent *entry = readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        std::string candidate = std::string(KPROBE_RUN_CLANG_LIB_DIR) + "/" + entry->d_name;
        struct stat st;
        if (stat((candidate + "/include/stddef.h").c_str(), &st) != 0) continue;
        if (best.empty() || candidate > best) best = candidate;
    }
    closedir(dir);
    return best;
}

// /usr/include/<arch>-linux-gnu of the machine the worker runs on, if it exists.
std::string hostMultiarchIncludeDirectory() {
    llvm::Triple host(llvm::sys::getProcessTriple());
    std::string directory = "/usr/include/" + host.getArchName().str() + "-linux-gnu";
    struct stat st;
    if (stat(directory.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return {};
    return directory;
}

char *copyText(const std::string &text, size_t *size) {
    char *buffer = static_cast<char *>(malloc(text.size() + 1));
    if (!buffer) {
        *size = 0;
        return nullptr;
    }
    memcpy(buffer, text.data(), text.size());
    buffer[text.size()] = '\0';
    *size = text.size();
    return buffer;
}

int finish(clang_bpf_result *result, int status, const std::string &diagnostics,
           const llvm::SmallVectorImpl<char> *object) {
    result->diagnostics = copyText(diagnostics, &result->diagnostics_size);
    if (status == CLANG_BPF_OK && object && !object->empty()) {
        result->object = static_cast<unsigned char *>(malloc(object->size()));
        if (result->object) {
            memcpy(result->object, object->data(), object->size());
            result->object_size = object->size();
        }
    }
    return status;
}

// Back-end diagnostics from our own code generation (the host-triple path), reported through
// clang's engine at the probe's source location, so they read like the front end's.
class BackendDiagnostics {
public:
    explicit BackendDiagnostics(clang::CompilerInstance &compiler) : compiler(compiler) {}

    static void handle(const llvm::DiagnosticInfo &info, void *context) {
        static_cast<BackendDiagnostics *>(context)->report(info);
    }

private:
    clang::CompilerInstance &compiler;
    // The BPF assembler reports each bad token of an asm line; once per line and message is enough.
    std::set<std::pair<unsigned, std::string>> reported;

    void report(const llvm::DiagnosticInfo &info) {
        clang::DiagnosticsEngine::Level level;
        switch (info.getSeverity()) {
        case llvm::DS_Error: level = clang::DiagnosticsEngine::Error; break;
        case llvm::DS_Warning: level = clang::DiagnosticsEngine::Warning; break;
        case llvm::DS_Note: level = clang::DiagnosticsEngine::Note; break;
        case llvm::DS_Remark: return;
        }
        clang::SourceLocation location;
        std::string message;
        if (auto *assembly = llvm::dyn_cast<llvm::DiagnosticInfoSrcMgr>(&info)) {
            // clang tags each asm statement with its source location (!srcloc).
            if (assembly->isInlineAsmDiag() && assembly->getLocCookie() != 0) {
                location = clang::SourceLocation::getFromRawEncoding(assembly->getLocCookie());
            }
            const llvm::SMDiagnostic &detail = assembly->getSMDiag();
            message = detail.getMessage().str() + " in inline assembly '" + detail.getLineContents().trim().str() +
                      "': a probe runs as BPF code, which cannot use the host architecture's inline assembly";
        } else if (auto *unsupported = llvm::dyn_cast<llvm::DiagnosticInfoUnsupported>(&info)) {
            location = sourceLocation(*unsupported);
            message = unsupported->getMessage().str();
            if (location.isInvalid()) message = "in function " + unsupported->getFunction().getName().str() + ": " + message;
        } else {
            llvm::raw_string_ostream text(message);
            llvm::DiagnosticPrinterRawOStream printer(text);
            info.print(printer);
            text.flush();
        }
        if (!reported.insert({location.getRawEncoding(), message}).second) return;
        clang::DiagnosticsEngine &engine = compiler.getDiagnostics();
        engine.Report(location, engine.getCustomDiagID(level, "%0")) << message;
    }

    // The instruction's debug location, else the function's definition (as clang does).
    clang::SourceLocation sourceLocation(const llvm::DiagnosticInfoUnsupported &info) {
        if (!compiler.hasSourceManager()) return {};
        llvm::StringRef file;
        unsigned line = 0, column = 0;
        if (info.isLocationAvailable()) {
            info.getLocation(file, line, column);
        } else if (const llvm::DISubprogram *function = info.getFunction().getSubprogram()) {
            file = function->getFilename();
            line = function->getLine();
        } else {
            return {};
        }
        auto entry = compiler.getFileManager().getFile(file);
        if (!entry || line == 0) return {};
        return compiler.getSourceManager().translateFileLineCol(*entry, line, column ? column : 1);
    }
};

// What `clang -emit-llvm | llc -march=bpf` does between the two tools: the module keeps the
// host's struct layouts (they match the kernel's headers) and is given to the BPF back end.
// It runs at the end of the source file, while clang's source manager can still place
// back-end errors in the probe.
class HostToBPFAction : public kprobe_run::ProbeAction<clang::EmitLLVMOnlyAction> {
public:
    HostToBPFAction(const clang_bpf_input *input, llvm::LLVMContext *context, std::string bpfTriple, llvm::SmallVectorImpl<char> &object)
        : kprobe_run::ProbeAction<clang::EmitLLVMOnlyAction>(input, context), bpfTriple(std::move(bpfTriple)),
          cpu(input->cpu && *input->cpu ? input->cpu : "generic"), object(object) {}

    int status = CLANG_BPF_COMPILE_ERROR;

protected:
    void EndSourceFileAction() override {
        clang::EmitLLVMOnlyAction::EndSourceFileAction();
        clang::CompilerInstance &compiler = getCompilerInstance();
        std::unique_ptr<llvm::Module> module = takeModule();
        if (!module || compiler.getDiagnostics().hasErrorOccurred()) return;
        // clang has already told the printer that the file ended; reopen it for our reports.
        clang::DiagnosticConsumer &client = compiler.getDiagnosticClient();
        client.BeginSourceFile(compiler.getLangOpts(), nullptr);
        status = emit(*module, compiler);
        client.EndSourceFile();
    }

private:
    std::string bpfTriple;
    std::string cpu;
    llvm::SmallVectorImpl<char> &object;

    int emit(llvm::Module &module, clang::CompilerInstance &compiler) {
        clang::DiagnosticsEngine &engine = compiler.getDiagnostics();
        std::string error;
        const llvm::Target *target = llvm::TargetRegistry::lookupTarget(bpfTriple, error);
        if (!target) {
            engine.Report(engine.getCustomDiagID(clang::DiagnosticsEngine::Error, "the BPF back end is unavailable: %0"))
                << error;
            return CLANG_BPF_BACKEND_UNAVAILABLE;
        }
        llvm::TargetOptions options;
        std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
            bpfTriple, cpu, "", options, llvm::None, llvm::None, llvm::CodeGenOpt::Default));
        if (!machine) {
            engine.Report(engine.getCustomDiagID(clang::DiagnosticsEngine::Error, "cannot create a target machine for %0"))
                << bpfTriple;
            return CLANG_BPF_BACKEND_UNAVAILABLE;
        }
        module.setTargetTriple(bpfTriple);
        module.setDataLayout(machine->createDataLayout());
        for (llvm::Function &function : module) {
            function.removeFnAttr("target-cpu");
            function.removeFnAttr("target-features");
            function.removeFnAttr("tune-cpu");
        }

        BackendDiagnostics diagnostics(compiler);
        module.getContext().setDiagnosticHandlerCallBack(BackendDiagnostics::handle, &diagnostics);
        llvm::raw_svector_ostream stream(object);
        llvm::legacy::PassManager passes;
        if (machine->addPassesToEmitFile(passes, stream, nullptr, llvm::CGFT_ObjectFile)) {
            engine.Report(engine.getCustomDiagID(clang::DiagnosticsEngine::Error,
                                                 "the BPF back end cannot emit an object file"));
            return CLANG_BPF_BACKEND_UNAVAILABLE;
        }
        passes.run(module);
        return engine.hasErrorOccurred() || object.empty() ? CLANG_BPF_COMPILE_ERROR : CLANG_BPF_OK;
    }
};

} // namespace

extern "C" void clang_bpf_initialize(void) {
    llvm::install_fatal_error_handler(fatalErrorHandler, nullptr);
    LLVMInitializeBPFTargetInfo();
    LLVMInitializeBPFTarget();
    LLVMInitializeBPFTargetMC();
    LLVMInitializeBPFAsmPrinter();
    // Inline asm in a probe goes through the BPF assembler; without it LLVM aborts.
    LLVMInitializeBPFAsmParser();
}

namespace {

// Records every file the compile opens, system headers included, so that the parent can tell
// when a cached object is stale: clang's default collector leaves system headers out.
class AllDependencies : public clang::DependencyCollector {
public:
    bool needSystemDependencies() override { return true; }

    bool sawDependency(llvm::StringRef filename, bool, bool, bool isModuleFile, bool isMissing) override {
        return !isMissing && !isModuleFile && !filename.startswith("<");
    }
};

void copyDependencies(clang_bpf_result *result, const AllDependencies &collector) {
    std::string joined;
    for (const std::string &path : collector.getDependencies()) {
        joined += path;
        joined.push_back('\0');
    }
    if (joined.empty()) return;
    result->dependencies = static_cast<char *>(malloc(joined.size()));
    if (!result->dependencies) return;
    memcpy(result->dependencies, joined.data(), joined.size());
    result->dependencies_size = joined.size();
}

// The header tree of a first run, read from the decompressed archive (a memfd) when the compile
// opens a file. Mapping the whole image instead would put all of it in the worker's resident
// set: the kernel maps 64 KiB around every read fault of a shared memory mapping, so reading a
// few hundred headers maps nearly all 30 MiB. Paths resolve as InMemoryFileSystem resolves them
// (absolute against the working directory, `.` and `..` removed) and statuses are the ones it
// gave, so that the object is the same as the one compiled from the written files.
class HeaderTreeFileSystem : public llvm::vfs::FileSystem {
    struct Entry {
        bool directory;
        uint64_t offset;
        uint64_t length;
        llvm::sys::fs::UniqueID id;
    };

public:
    HeaderTreeFileSystem(const clang_bpf_input &input) : root(input.tree_root), fd(input.tree_fd) {
        entries[""] = Entry{true, 0, 0, llvm::vfs::getNextVirtualUniqueID()};
        for (size_t i = 0; i < input.tree_file_count; i++) {
            const clang_bpf_tree_file &file = input.tree_files[i];
            llvm::StringRef path(file.path);
            entries[path] = Entry{false, file.offset, file.length, llvm::vfs::getNextVirtualUniqueID()};
            for (llvm::StringRef parent = llvm::sys::path::parent_path(path); !parent.empty();
                 parent = llvm::sys::path::parent_path(parent)) {
                if (!entries.try_emplace(parent, Entry{true, 0, 0, llvm::vfs::getNextVirtualUniqueID()}).second) break;
            }
        }
    }

    llvm::ErrorOr<llvm::vfs::Status> status(const llvm::Twine &path) override {
        const Entry *entry = find(path);
        if (!entry) return std::make_error_code(std::errc::no_such_file_or_directory);
        return statusOf(*entry, path.str());
    }

    llvm::ErrorOr<std::unique_ptr<llvm::vfs::File>> openFileForRead(const llvm::Twine &path) override {
        std::string canonical;
        const Entry *entry = find(path, &canonical);
        if (!entry) return std::make_error_code(std::errc::no_such_file_or_directory);
        if (entry->directory) return std::make_error_code(std::errc::invalid_argument);
        return std::unique_ptr<llvm::vfs::File>(new TreeFile(statusOf(*entry, path.str()), fd, entry->offset, canonical));
    }

    llvm::vfs::directory_iterator dir_begin(const llvm::Twine &path, std::error_code &error) override {
        std::string canonical;
        const Entry *entry = find(path, &canonical);
        if (!entry || !entry->directory) {
            error = std::make_error_code(entry ? std::errc::not_a_directory : std::errc::no_such_file_or_directory);
            return {};
        }
        llvm::StringRef relative = llvm::StringRef(canonical).drop_front(std::min(canonical.size(), root.size() + 1));
        std::vector<llvm::vfs::directory_entry> children;
        for (const auto &candidate : entries) {
            llvm::StringRef key = candidate.getKey();
            if (key.empty() || llvm::sys::path::parent_path(key) != relative) continue;
            children.emplace_back(root + "/" + key.str(), candidate.getValue().directory ? llvm::sys::fs::file_type::directory_file
                                                                                         : llvm::sys::fs::file_type::regular_file);
        }
        error = {};
        return llvm::vfs::directory_iterator(std::make_shared<Listing>(std::move(children)));
    }

    llvm::ErrorOr<std::string> getCurrentWorkingDirectory() const override { return workingDirectory; }

    std::error_code setCurrentWorkingDirectory(const llvm::Twine &path) override {
        llvm::SmallString<256> absolute;
        path.toVector(absolute);
        if (!llvm::sys::path::is_absolute(absolute)) {
            absolute = workingDirectory;
            llvm::sys::path::append(absolute, path);
        }
        llvm::sys::path::remove_dots(absolute, true);
        workingDirectory = std::string(absolute.str());
        return {};
    }

    std::error_code getRealPath(const llvm::Twine &path, llvm::SmallVectorImpl<char> &output) const override {
        std::string canonical;
        if (!find(path, &canonical)) return std::make_error_code(std::errc::no_such_file_or_directory);
        output.assign(canonical.begin(), canonical.end());
        return {};
    }

private:
    class TreeFile : public llvm::vfs::File {
    public:
        TreeFile(llvm::vfs::Status status, int fd, uint64_t offset, std::string name)
            : fileStatus(std::move(status)), fd(fd), offset(offset), name(std::move(name)) {}

        llvm::ErrorOr<llvm::vfs::Status> status() override { return fileStatus; }

        // Read with pread rather than mapped, for the reason above; the buffer ends in a NUL.
        llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> getBuffer(const llvm::Twine &, int64_t, bool, bool) override {
            size_t length = fileStatus.getSize();
            std::unique_ptr<llvm::WritableMemoryBuffer> buffer = llvm::WritableMemoryBuffer::getNewUninitMemBuffer(length, name);
            if (!buffer) return std::make_error_code(std::errc::not_enough_memory);
            size_t done = 0;
            while (done < length) {
                ssize_t n = pread(fd, buffer->getBufferStart() + done, length - done, off_t(offset + done));
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) return std::error_code(errno, std::generic_category());
                if (n == 0) return std::make_error_code(std::errc::io_error);
                done += size_t(n);
            }
            return std::unique_ptr<llvm::MemoryBuffer>(std::move(buffer));
        }

        std::error_code close() override { return {}; }

    private:
        llvm::vfs::Status fileStatus;
        int fd;
        uint64_t offset;
        std::string name;
    };

    struct Listing : llvm::vfs::detail::DirIterImpl {
        explicit Listing(std::vector<llvm::vfs::directory_entry> children) : children(std::move(children)) { increment(); }

        std::error_code increment() override {
            CurrentEntry = next < children.size() ? children[next++] : llvm::vfs::directory_entry();
            return {};
        }

        std::vector<llvm::vfs::directory_entry> children;
        size_t next = 0;
    };

    // The entry at `path`, or null when it is not below the root; `canonical` gets its absolute path.
    const Entry *find(const llvm::Twine &path, std::string *canonical = nullptr) const {
        llvm::SmallString<256> absolute;
        path.toVector(absolute);
        if (!llvm::sys::path::is_absolute(absolute)) {
            llvm::SmallString<256> relative = absolute;
            absolute = workingDirectory;
            llvm::sys::path::append(absolute, relative);
        }
        llvm::sys::path::remove_dots(absolute, true);
        llvm::StringRef full = absolute.str();
        llvm::StringRef key;
        if (full == root) {
            key = "";
        } else if (full.startswith(root) && full.size() > root.size() && full[root.size()] == '/') {
            key = full.drop_front(root.size() + 1);
        } else {
            return nullptr;
        }
        auto found = entries.find(key);
        if (found == entries.end()) return nullptr;
        if (canonical) *canonical = full.str();
        return &found->getValue();
    }

    // As InMemoryFileSystem's nodes: modified at time 0, owner 0, readable and writable by all.
    static llvm::vfs::Status statusOf(const Entry &entry, const std::string &name) {
        using namespace llvm::sys::fs;
        return llvm::vfs::Status(name, entry.id, llvm::sys::toTimePoint(0), 0, 0, entry.directory ? 0 : entry.length,
                                 entry.directory ? file_type::directory_file : file_type::regular_file,
                                 entry.directory ? perms(all_all | all_exe) : all_all);
    }

    std::string root;
    int fd;
    std::string workingDirectory = "/";
    llvm::StringMap<Entry> entries;
};

// Everything a compile and a precompiled-header build share: the file system with the
// virtual files, and the cc1 invocation the driver makes of the driver-style flags.
struct Setup {
    llvm::IntrusiveRefCntPtr<llvm::vfs::OverlayFileSystem> overlay;
    std::shared_ptr<clang::CompilerInvocation> invocation;
    bool direct = false;
    std::string bpfTriple;
    std::string sourceName;
};

int prepare(const clang_bpf_input *input, llvm::raw_string_ostream &diagnostics, Setup &setup) {
    std::string resourceDir = findResourceDir();
    if (resourceDir.empty()) {
        diagnostics << "error: clang's builtin headers were not found under " KPROBE_RUN_CLANG_LIB_DIR
                       "/<version>/include; install libclang-common-14-dev\n";
        return CLANG_BPF_NO_RESOURCE_DIR;
    }

    const std::string requested = input->triple ? input->triple : "bpf";
    setup.direct = requested == "bpf" || requested == "bpfel" || requested == "bpfeb";
    std::string frontendTriple;
    if (setup.direct) {
        frontendTriple = requested == "bpf" ? "bpfel" : requested;
        setup.bpfTriple = frontendTriple;
    } else {
        llvm::Triple triple(requested);
        // BPF registers and pointers are 64-bit; a 32-bit host's struct layouts would not match.
        if (triple.getArch() == llvm::Triple::UnknownArch || !triple.isArch64Bit()) {
            diagnostics << "error: cannot compile BPF with headers for target '" << requested
                        << "': use \"bpf\" or a 64-bit architecture triple such as x86_64-linux-gnu\n";
            return CLANG_BPF_BAD_ARGUMENTS;
        }
        frontendTriple = requested;
        setup.bpfTriple = triple.isLittleEndian() ? "bpfel" : "bpfeb";
    }

    setup.sourceName = input->source_name && *input->source_name ? input->source_name : "<stdin>";
    if (setup.sourceName == "-") setup.sourceName = "<stdin>";

    // Virtual files (and the probe itself, so that its name is the user's) over the real
    // filesystem; the overlay gives the in-memory layer the process's working directory.
    setup.overlay = new llvm::vfs::OverlayFileSystem(llvm::vfs::getRealFileSystem());
    if (input->tree_root) setup.overlay->pushOverlay(new HeaderTreeFileSystem(*input));
    llvm::IntrusiveRefCntPtr<llvm::vfs::InMemoryFileSystem> memory(new llvm::vfs::InMemoryFileSystem());
    setup.overlay->pushOverlay(memory);
    for (size_t i = 0; i < input->file_count; i++) {
        const clang_bpf_file &file = input->files[i];
        memory->addFile(file.path, 0,
                        llvm::MemoryBuffer::getMemBufferCopy(llvm::StringRef(file.contents, file.length), file.path));
    }
    memory->addFile(setup.sourceName, 0,
                    llvm::MemoryBuffer::getMemBufferCopy(llvm::StringRef(input->source, input->source_length),
                                                         setup.sourceName));

    std::vector<std::string> ownedArguments = {
        DriverPath,
        "-std=gnu11",
        "-Wno-unused-value",
        "-Wno-pointer-sign",
        "-Wno-compare-distinct-pointer-types",
        "-Wno-gnu-variable-sized-type-not-at-end",
        "-Wno-address-of-packed-member",
        "-Wno-tautological-compare",
        "-Wno-unknown-warning-option",
        // An undeclared function would become an extern that libbpf cannot resolve at load (clang 16's default).
        "-Werror=implicit-function-declaration",
    };
    for (size_t i = 0; i < input->argument_count; i++) ownedArguments.push_back(input->arguments[i]);
    if (setup.direct) {
        // UAPI headers (<linux/bpf.h>, <linux/if_ether.h>) include <asm/...>, which Debian keeps
        // in the host's multiarch directory; the BPF target does not search it. Searched last,
        // as libbpf-bootstrap's CLANG_BPF_SYS_INCLUDES does, so it only fills what is missing.
        std::string multiarch = hostMultiarchIncludeDirectory();
        if (!multiarch.empty()) {
            ownedArguments.push_back("-idirafter");
            ownedArguments.push_back(multiarch);
        }
    }
    // After the user's flags, so that these always hold.
    const std::vector<std::string> fixed = {
        "-target", frontendTriple, "-O2", "-g",
        "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
        "-fno-color-diagnostics", "-resource-dir", resourceDir,
        "-c", "-x", "c", setup.sourceName,
    };
    ownedArguments.insert(ownedArguments.end(), fixed.begin(), fixed.end());
    // The host-triple path takes the CPU in its own BPF back end (HostToBPFAction).
    if (setup.direct && input->cpu && *input->cpu) ownedArguments.push_back(std::string("-mcpu=") + input->cpu);
    std::vector<const char *> arguments;
    for (const std::string &argument : ownedArguments) arguments.push_back(argument.c_str());

    // The driver turns the user's driver-style flags (-nostdinc, -target...) into cc1 flags,
    // in-process: there is no clang binary to run.
    llvm::IntrusiveRefCntPtr<clang::DiagnosticOptions> driverOptions(new clang::DiagnosticOptions());
    driverOptions->ShowColors = false;
    clang::TextDiagnosticPrinter driverPrinter(diagnostics, driverOptions.get());
    llvm::IntrusiveRefCntPtr<clang::DiagnosticIDs> diagnosticIDs(new clang::DiagnosticIDs());
    clang::DiagnosticsEngine driverDiagnostics(diagnosticIDs, driverOptions, &driverPrinter, false);

    clang::driver::Driver driver(DriverPath, frontendTriple, driverDiagnostics, "kprobe-run-cc", setup.overlay);
    driver.setCheckInputsExist(false);
    std::unique_ptr<clang::driver::Compilation> compilation(driver.BuildCompilation(arguments));
    if (!compilation || driverDiagnostics.hasErrorOccurred()) return CLANG_BPF_BAD_ARGUMENTS;
    const clang::driver::JobList &jobs = compilation->getJobs();
    if (jobs.size() > 1) {
        diagnostics << "error: the arguments ask for more than one compilation (an extra input file?)\n";
        return CLANG_BPF_BAD_ARGUMENTS;
    }
    if (jobs.size() != 1 || !llvm::isa<clang::driver::Command>(*jobs.begin())) {
        diagnostics << "error: clang's driver made no compile job from these arguments\n";
        return CLANG_BPF_BAD_ARGUMENTS;
    }
    const llvm::opt::ArgStringList &cc1Arguments = llvm::cast<clang::driver::Command>(*jobs.begin()).getArguments();

    setup.invocation = std::make_shared<clang::CompilerInvocation>();
    if (!clang::CompilerInvocation::CreateFromArgs(*setup.invocation, cc1Arguments, driverDiagnostics, DriverPath) ||
        driverDiagnostics.hasErrorOccurred()) {
        return CLANG_BPF_BAD_ARGUMENTS;
    }
    setup.invocation->getDiagnosticOpts().ShowColors = false;
    return CLANG_BPF_OK;
}

void startCompiler(clang::CompilerInstance &compiler, Setup &setup, clang::TextDiagnosticPrinter &printer,
                   llvm::raw_string_ostream &diagnostics, const std::shared_ptr<AllDependencies> &dependencies) {
    compiler.setInvocation(setup.invocation);
    compiler.createDiagnostics(&printer, false);
    compiler.setVerboseOutputStream(diagnostics);
    compiler.createFileManager(setup.overlay);
    compiler.addDependencyCollector(dependencies);
}

// clang's GeneratePCHAction with the header written to its file as it is produced: clang's own
// keeps the whole header (15 MiB for sched.h, fs.h and sock.h) in memory, and grows that buffer
// by doubling, on top of the parsed headers. The bytes are the same.
class StreamingPCHWriter : public clang::SemaConsumer {
public:
    StreamingPCHWriter(clang::CompilerInstance &compiler, std::unique_ptr<llvm::raw_fd_stream> file, std::string path,
                       std::shared_ptr<bool> written)
        : compiler(compiler), file(std::move(file)), path(std::move(path)), written(std::move(written)),
          // The writer flushes to the file whenever a megabyte has collected.
          stream(buffer, this->file.get(), 1), writer(stream, buffer, compiler.getModuleCache(), {}) {}

    void InitializeSema(clang::Sema &semantics) override { sema = &semantics; }

    void HandleTranslationUnit(clang::ASTContext &) override {
        if (!sema || compiler.getDiagnostics().hasErrorOccurred()) return;
        writer.WriteAST(*sema, path, nullptr, "");
        file->write(buffer.data(), buffer.size());
        buffer.clear();
        file->close();
        *written = !file->has_error();
    }

    clang::ASTMutationListener *GetASTMutationListener() override { return &writer; }
    clang::ASTDeserializationListener *GetASTDeserializationListener() override { return &writer; }

private:
    clang::CompilerInstance &compiler;
    std::unique_ptr<llvm::raw_fd_stream> file;
    std::string path;
    std::shared_ptr<bool> written;
    llvm::SmallVector<char, 0> buffer;
    llvm::BitstreamWriter stream;
    clang::ASTWriter writer;
    clang::Sema *sema = nullptr;
};

class StreamingPCHAction : public clang::GeneratePCHAction {
public:
    explicit StreamingPCHAction(std::string path) : path(std::move(path)) {}

    // Shared with the consumer, which the compiler instance may free before the action ends.
    std::shared_ptr<bool> written = std::make_shared<bool>(false);

protected:
    std::unique_ptr<clang::ASTConsumer> CreateASTConsumer(clang::CompilerInstance &compiler, llvm::StringRef) override {
        std::error_code error;
        auto file = std::make_unique<llvm::raw_fd_stream>(path, error);
        if (error) {
            clang::DiagnosticsEngine &engine = compiler.getDiagnostics();
            engine.Report(engine.getCustomDiagID(clang::DiagnosticsEngine::Error, "cannot write the precompiled header %0: %1"))
                << path << error.message();
            return nullptr;
        }
        return std::make_unique<StreamingPCHWriter>(compiler, std::move(file), path, written);
    }

private:
    std::string path;
};

} // namespace

extern "C" int clang_bpf_compile(const clang_bpf_input *input, clang_bpf_result *result) {
    memset(result, 0, sizeof *result);
    std::string diagnosticsText;
    llvm::raw_string_ostream diagnostics(diagnosticsText);
    Setup setup;
    int prepared = prepare(input, diagnostics, setup);
    if (prepared != CLANG_BPF_OK) return finish(result, prepared, diagnostics.str(), nullptr);
    if (input->pch_path && *input->pch_path) setup.invocation->getPreprocessorOpts().ImplicitPCHInclude = input->pch_path;

    clang::CompilerInstance compiler;
    clang::TextDiagnosticPrinter printer(diagnostics, &setup.invocation->getDiagnosticOpts());
    auto dependencies = std::make_shared<AllDependencies>();
    startCompiler(compiler, setup, printer, diagnostics, dependencies);

    llvm::SmallVector<char, 0> object;
    int status;
    if (setup.direct) {
        compiler.setOutputStream(std::make_unique<llvm::raw_svector_ostream>(object));
        kprobe_run::ProbeAction<clang::EmitObjAction> action(input);
        bool ok = compiler.ExecuteAction(action);
        status = ok && !compiler.getDiagnostics().hasErrorOccurred() && !object.empty() ? CLANG_BPF_OK
                                                                                         : CLANG_BPF_COMPILE_ERROR;
    } else {
        llvm::LLVMContext context;
        HostToBPFAction action(input, &context, setup.bpfTriple, object);
        bool ok = compiler.ExecuteAction(action);
        status = ok && !compiler.getDiagnostics().hasErrorOccurred() ? action.status : CLANG_BPF_COMPILE_ERROR;
    }
    copyDependencies(result, *dependencies);
    return finish(result, status, diagnostics.str(), &object);
}

extern "C" int clang_bpf_build_pch(const clang_bpf_input *input, const char *output_path, clang_bpf_result *result) {
    memset(result, 0, sizeof *result);
    std::string diagnosticsText;
    llvm::raw_string_ostream diagnostics(diagnosticsText);
    Setup setup;
    int prepared = prepare(input, diagnostics, setup);
    if (prepared != CLANG_BPF_OK) return finish(result, prepared, diagnostics.str(), nullptr);

    // The probe's own invocation with only the action and the output changed: every option
    // the header is parsed with (target, macros, -O2's __OPTIMIZE__) is then the probe's, which
    // is what a later compile checks before it accepts the header.
    clang::FrontendOptions &frontend = setup.invocation->getFrontendOpts();
    frontend.ProgramAction = clang::frontend::GeneratePCH;
    frontend.Inputs = {clang::FrontendInputFile(setup.sourceName, clang::InputKind(clang::Language::C))};
    frontend.OutputFile = output_path;

    clang::CompilerInstance compiler;
    clang::TextDiagnosticPrinter printer(diagnostics, &setup.invocation->getDiagnosticOpts());
    auto dependencies = std::make_shared<AllDependencies>();
    startCompiler(compiler, setup, printer, diagnostics, dependencies);
    StreamingPCHAction action(output_path);
    bool ok = compiler.ExecuteAction(action) && !compiler.getDiagnostics().hasErrorOccurred() && *action.written;
    copyDependencies(result, *dependencies);
    return finish(result, ok ? CLANG_BPF_OK : CLANG_BPF_COMPILE_ERROR, diagnostics.str(), nullptr);
}

extern "C" const char *clang_bpf_version(void) {
    static const std::string version = clang::getClangFullVersion();
    return version.c_str();
}

extern "C" void clang_bpf_result_dispose(clang_bpf_result *result) {
    free(result->object);
    free(result->diagnostics);
    free(result->dependencies);
    memset(result, 0, sizeof *result);
}
