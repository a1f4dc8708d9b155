#include "probe_consumer.h"

#include <clang/AST/ASTContext.h>
#include <clang/AST/Attr.h>
#include <clang/AST/Decl.h>
#include <clang/AST/Expr.h>
#include <clang/AST/RecursiveASTVisitor.h>
#include <clang/AST/Stmt.h>
#include <clang/Basic/TargetInfo.h>
#include <clang/Basic/SourceManager.h>
#include <clang/Sema/Sema.h>
#include <clang/Sema/SemaConsumer.h>

#include <stdlib.h>

#include <map>
#include <set>
#include <string>
#include <utility>

// Two things a probe's object needs that plain code generation does not give it:
//
// - BTF for `__kconfig`/`__ksym` externs. Sema hands extern variables to code generation (for
//   their debug info, hence BTF) from a list it keeps while it parses, and only for targets that
//   allow debug info for external references (BPF does, the host triple used with kernel headers
//   does not); externs read back from a precompiled header are not on it either, and libbpf then
//   refuses the object ("failed to find BTF for extern"). The externs the probe's own functions
//   use are handed over here instead.
// - The record type of each perf or ring buffer map. libbpf-style probes keep `struct event` in
//   a local or a reserved pointer, which puts no BTF for it in the object; the runtime could only
//   print records as hex. The probe's functions are searched for the struct that reaches
//   bpf_perf_event_output / bpf_ringbuf_output / bpf_ringbuf_reserve for which map (also through
//   wrappers such as libbpf-tools' reserve_buf/submit_buf), each type gets a global pointer so
//   that clang emits its BTF, and the map → type table goes into `.kprobe_run.meta` as JSON
//   written by the caller (the Swift side owns that schema).

namespace kprobe_run {
namespace {

const char *const MetadataSection = ".kprobe_run.meta";
// Apart from the JSON, which the runtime reads up to its first NUL.
const char *const MetadataTypesSection = ".kprobe_run.meta.types";
const char *const MetadataVariable = "__kprobe_run_meta";

std::string calleeName(const clang::CallExpr *call) {
    // BPF helpers are pointers to functions (`static long (*bpf_ringbuf_output)(…) = (void *)130`).
    const clang::Expr *callee = call->getCallee()->IgnoreParenImpCasts();
    if (auto *reference = llvm::dyn_cast<clang::DeclRefExpr>(callee)) return reference->getDecl()->getName().str();
    return {};
}

// `&events` → "events".
std::string mapName(const clang::Expr *argument) {
    const clang::Expr *stripped = argument->IgnoreParenImpCasts();
    if (auto *address = llvm::dyn_cast<clang::UnaryOperator>(stripped)) {
        if (address->getOpcode() == clang::UO_AddrOf) stripped = address->getSubExpr()->IgnoreParenImpCasts();
    }
    if (auto *reference = llvm::dyn_cast<clang::DeclRefExpr>(stripped)) {
        if (auto *variable = llvm::dyn_cast<clang::VarDecl>(reference->getDecl())) {
            if (variable->hasGlobalStorage()) return variable->getName().str();
        }
    }
    return {};
}

// The record a pointer type points to (or the record itself), as it is spelled.
clang::QualType recordOf(clang::QualType type) {
    if (type->isPointerType()) type = type->getPointeeType();
    if (!type->isRecordType()) return {};
    return type.getUnqualifiedType();
}

const clang::ParmVarDecl *parameterOf(const clang::Expr *expression) {
    if (auto *reference = llvm::dyn_cast<clang::DeclRefExpr>(expression->IgnoreParenImpCasts())) {
        return llvm::dyn_cast<clang::ParmVarDecl>(reference->getDecl());
    }
    return nullptr;
}

class EventTypes {
public:
    // map → record type, in the order found.
    std::vector<std::pair<std::string, clang::QualType>> found;

    void analyze(const std::vector<clang::FunctionDecl *> &functions) {
        // A wrapper found in one function makes its callers' arguments interesting: go round
        // until nothing new turns up (wrappers of wrappers are rare, so this ends quickly).
        for (int round = 0; round < 4; round++) {
            size_t known = flows.size() + reserving.size();
            for (clang::FunctionDecl *function : functions) {
                Visitor visitor(*this, function);
                visitor.TraverseStmt(function->getBody());
            }
            if (flows.size() + reserving.size() == known) break;
        }
    }

private:
    // (function, parameter index) → map: the parameter's pointee is written to that map.
    std::map<std::pair<const clang::FunctionDecl *, unsigned>, std::string> flows;
    // Functions that return what bpf_ringbuf_reserve returned for a map.
    std::map<const clang::FunctionDecl *, std::string> reserving;

    void record(const std::string &map, clang::QualType type) {
        if (map.empty() || type.isNull()) return;
        for (auto &entry : found) {
            if (entry.first == map) return;
        }
        found.emplace_back(map, type);
    }

    // The data argument of an output call for `map`, seen in `function`.
    void data(const std::string &map, const clang::Expr *argument, const clang::FunctionDecl *function) {
        if (map.empty()) return;
        if (const clang::ParmVarDecl *parameter = parameterOf(argument)) {
            if (parameter->getType()->isVoidPointerType()) {
                flows.emplace(std::make_pair(function->getCanonicalDecl(), parameter->getFunctionScopeIndex()), map);
                return;
            }
        }
        record(map, recordOf(argument->IgnoreParenImpCasts()->getType()));
    }

    class Visitor : public clang::RecursiveASTVisitor<Visitor> {
    public:
        Visitor(EventTypes &types, const clang::FunctionDecl *function) : types(types), function(function) {}

        bool VisitCallExpr(clang::CallExpr *call) {
            std::string name = calleeName(call);
            unsigned count = call->getNumArgs();
            if (name == "bpf_perf_event_output" && count >= 4) {
                types.data(mapName(call->getArg(1)), call->getArg(3), function);
            } else if (name == "bpf_ringbuf_output" && count >= 2) {
                types.data(mapName(call->getArg(0)), call->getArg(1), function);
            } else if (const clang::FunctionDecl *callee = call->getDirectCallee()) {
                for (unsigned index = 0; index < count; index++) {
                    auto flow = types.flows.find(std::make_pair(callee->getCanonicalDecl(), index));
                    if (flow != types.flows.end()) types.data(flow->second, call->getArg(index), function);
                }
            }
            return true;
        }

        // `event = bpf_ringbuf_reserve(&events, …)`: the type is the one the result is converted to.
        bool VisitCastExpr(clang::CastExpr *cast) {
            auto *call = llvm::dyn_cast<clang::CallExpr>(cast->getSubExpr()->IgnoreParens());
            if (!call) return true;
            std::string map = reservedMap(call);
            if (!map.empty()) types.record(map, recordOf(cast->getType()));
            return true;
        }

        bool VisitReturnStmt(clang::ReturnStmt *statement) {
            const clang::Expr *value = statement->getRetValue();
            auto *call = value ? llvm::dyn_cast<clang::CallExpr>(value->IgnoreParenImpCasts()) : nullptr;
            if (!call) return true;
            std::string map = reservedMap(call);
            if (!map.empty() && function->getReturnType()->isVoidPointerType()) {
                types.reserving.emplace(function->getCanonicalDecl(), map);
            }
            return true;
        }

    private:
        EventTypes &types;
        const clang::FunctionDecl *function;

        std::string reservedMap(const clang::CallExpr *call) {
            if (calleeName(call) == "bpf_ringbuf_reserve" && call->getNumArgs() >= 1) return mapName(call->getArg(0));
            if (const clang::FunctionDecl *callee = call->getDirectCallee()) {
                auto wrapper = types.reserving.find(callee->getCanonicalDecl());
                if (wrapper != types.reserving.end()) return wrapper->second;
            }
            return {};
        }
    };
};

// The extern variables (`__kconfig`, `__ksym`) that `functions` use and code generation would
// not otherwise get: those read from a precompiled header, and, where the target gives no debug
// info for external references (a host-triple compile against kernel headers; BPF does), all.
class ExternsWithoutBTF : public clang::RecursiveASTVisitor<ExternsWithoutBTF> {
public:
    explicit ExternsWithoutBTF(bool all) : all(all) {}

    std::vector<clang::VarDecl *> found;

    bool VisitDeclRefExpr(clang::DeclRefExpr *reference) {
        auto *variable = llvm::dyn_cast<clang::VarDecl>(reference->getDecl());
        if (!variable || !variable->hasExternalStorage() || variable->hasInit()) return true;
        clang::VarDecl *first = variable->getCanonicalDecl();
        if ((all || first->isFromASTFile()) && seen.insert(first).second) found.push_back(first);
        return true;
    }

private:
    bool all;
    std::set<clang::VarDecl *> seen;
};

class ProbeConsumer : public clang::SemaConsumer {
public:
    ProbeConsumer(clang::ASTConsumer *codegen, const clang_bpf_input *input) : codegen(codegen), input(input) {}

    void InitializeSema(clang::Sema &semantics) override { sema = &semantics; }
    void ForgetSema() override { sema = nullptr; }

    bool HandleTopLevelDecl(clang::DeclGroupRef group) override {
        for (clang::Decl *decl : group) {
            if (auto *function = llvm::dyn_cast<clang::FunctionDecl>(decl)) {
                if (function->doesThisDeclarationHaveABody()) functions.push_back(function);
            } else if (auto *variable = llvm::dyn_cast<clang::VarDecl>(decl)) {
                // The BCC front end writes its own metadata.
                if (variable->getName() == MetadataVariable) hasMetadata = true;
            }
        }
        return true;
    }

    // Runs before code generation's own end of the translation unit (see probeConsumer).
    void HandleTranslationUnit(clang::ASTContext &context) override {
        if (context.getDiagnostics().hasErrorOccurred()) return;
        ExternsWithoutBTF externs(!context.getTargetInfo().allowDebugInfoForExternalRef());
        // A copy: walking a body can deserialize declarations from a precompiled header, which
        // reach HandleTopLevelDecl and would grow `functions` under the loop.
        const std::vector<clang::FunctionDecl *> probeFunctions = functions;
        for (clang::FunctionDecl *function : probeFunctions) externs.TraverseStmt(function->getBody());
        for (clang::VarDecl *variable : externs.found) codegen->CompleteExternalDeclaration(variable);

        if (hasMetadata || !input->write_metadata || !sema) return;
        EventTypes events;
        events.analyze(probeFunctions);
        if (events.found.empty()) return;
        emitEventTypes(context, events.found);
    }

private:
    clang::ASTConsumer *codegen;
    const clang_bpf_input *input;
    std::vector<clang::FunctionDecl *> functions;
    bool hasMetadata = false;
    clang::Sema *sema = nullptr;

    void emitEventTypes(clang::ASTContext &context, const std::vector<std::pair<std::string, clang::QualType>> &found) {
        clang::PrintingPolicy policy(context.getLangOpts());
        std::vector<std::string> maps, types;
        for (const auto &entry : found) {
            maps.push_back(entry.first);
            types.push_back(entry.second.getAsString(policy));
        }
        std::vector<const char *> mapPointers, typePointers;
        for (size_t i = 0; i < found.size(); i++) {
            mapPointers.push_back(maps[i].c_str());
            typePointers.push_back(types[i].c_str());
        }
        char *json = input->write_metadata(mapPointers.data(), typePointers.data(), found.size());
        if (!json) return;
        std::string text(json);
        free(json);

        clang::SourceManager &sources = context.getSourceManager();
        clang::SourceLocation end = sources.getLocForEndOfFile(sources.getMainFileID());
        for (size_t i = 0; i < found.size(); i++) {
            clang::QualType pointer = context.getPointerType(found[i].second).withConst();
            clang::Expr *null = clang::ImplicitCastExpr::Create(
                context, pointer, clang::CK_NullToPointer,
                clang::IntegerLiteral::Create(context, llvm::APInt(context.getIntWidth(context.IntTy), 0), context.IntTy, end),
                nullptr, clang::VK_PRValue, clang::FPOptionsOverride());
            emit(context, "__kprobe_run_event_" + maps[i], pointer, null, MetadataTypesSection, end);
        }
        clang::QualType array = context.getConstantArrayType(context.CharTy.withConst(), llvm::APInt(64, text.size() + 1),
                                                             nullptr, clang::ArrayType::Normal, 0);
        clang::Expr *literal = clang::StringLiteral::Create(context, text, clang::StringLiteral::Ascii, false,
                                                            context.getStringLiteralArrayType(context.CharTy, text.size()), end);
        emit(context, MetadataVariable, array, literal, MetadataSection, end);
    }

    // `static T name __attribute__((section(section), used)) = init;`, handed to code generation.
    void emit(clang::ASTContext &context, const std::string &name, clang::QualType type, clang::Expr *init,
              const char *section, clang::SourceLocation location) {
        clang::TranslationUnitDecl *unit = context.getTranslationUnitDecl();
        clang::VarDecl *variable = clang::VarDecl::Create(context, unit, location, location, &context.Idents.get(name), type,
                                                          context.getTrivialTypeSourceInfo(type, location), clang::SC_Static);
        variable->addAttr(clang::UsedAttr::CreateImplicit(context));
        variable->addAttr(clang::SectionAttr::CreateImplicit(context, section));
        unit->addDecl(variable);
        // Through Sema, which types a string literal as the array it initializes.
        sema->AddInitializerToDecl(variable, init, false);
        codegen->HandleTopLevelDecl(clang::DeclGroupRef(variable));
    }
};

} // namespace

std::unique_ptr<clang::ASTConsumer> probeConsumer(std::unique_ptr<clang::ASTConsumer> codegen, const clang_bpf_input *input) {
    clang::ASTConsumer *generator = codegen.get();
    std::vector<std::unique_ptr<clang::ASTConsumer>> consumers;
    // First: the multiplexer ends the translation unit in this order, and code generation must
    // see what the probe consumer adds before it finishes the module.
    consumers.push_back(std::make_unique<ProbeConsumer>(generator, input));
    consumers.push_back(std::move(codegen));
    return std::make_unique<clang::MultiplexConsumer>(std::move(consumers));
}

} // namespace kprobe_run
