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

// Facts about how the probe fills its maps that the runtime prints by:
// - `slots`: for each struct with an array member `slots` (libbpf-tools' `struct hist`; or a
//   global integer array indexed by a log2, funclatency's `hist[]`, by its name), whether
//   its index is computed with a log2 function (`log2l(delta)`, `bpf_log2l`, `__builtin_clz…`)
//   or is a plain number (runqlen's queue length): "log2" or "linear". An index that is a
//   variable counts as log2 when any value assigned to that variable in the function (directly
//   or through other variables) comes from such a call, or from a function of the probe that
//   makes one; an index that is a parameter, or comes from another function of the probe, says
//   nothing (the caller or that function computed it). One log2 index makes the struct log2.
//   `slotUnits`: when that log2 is taken of a bpf_ktime_get_ns() difference, its unit as
//   libbpf-tools' userspace names it: "nsecs", "usecs" (divided by 1000), "msecs" (by 1000000),
//   or "FLAG?UNIT:UNIT" when a global chooses the divisor (runqlat's
//   `if (targ_ms) delta /= 1000000U; else delta /= 1000U;`). `slotSteps`: a linear index that is
//   a quantity divided by a constant (cpufreq's `freq / HIST_STEP_SIZE`): struct → that step.
// - `syscallKeys`: maps whose key (or a field of it) is a syscall number, read from a
//   raw_syscalls tracepoint's `id` or a syscalls tracepoint's `nr` (syscount): map → the field
//   ("" for the key itself). `syscallKeyConditions`: when the number is one arm of `flag ? a : b`
//   on a global (`count_by_process ? pid : args->id`), map → "!flag" or "flag", the value of
//   the global under which the key is the syscall.
// - `catchAllKeys`: a map key the program sets to a constant in some path (runqlat's `hkey = -1`
//   when no per-process flag is set): map → that constant as the key's type reads it; or a struct
//   key that starts as `{}` and whose fields are set only under `if (global)` (biolatency's
//   `hkey.dev` when `targ_per_disk`): map → "{}", the all-zero key; or the constant an index of
//   a global array of structs starts as when only `if (flag)` changes it (runqlen's `hists[cpu]`,
//   `cpu = 0`): global → the constant, `catchAllKeyConditions`: global → "!flag". The entry under
//   it stands for everything, not for one key.
// - `deviceKeys`: maps whose key has a field computed from a disk's major number (biolatency's
//   `hkey.dev = MKDEV(BPF_CORE_READ(disk, major), BPF_CORE_READ(disk, first_minor))`, the
//   kernel's dev_t): map → that field.
// - `inFlight`: maps that hold operations in flight rather than results: a function looks an
//   entry up and deletes it (runqlat's and biolatency's `start`, opensnoop's `start`, execsnoop's
//   `execs`), or the values stored are bpf_ktime_get_ns() timestamps (syscount's `start`).
class MapFacts {
public:
    std::map<std::string, std::string> slots;
    std::map<std::string, std::string> syscallKeys;
    std::map<std::string, std::string> syscallKeyConditions;
    std::set<std::string> inFlight;
    std::map<std::string, std::string> catchAllKeys;
    std::map<std::string, std::string> catchAllKeyConditions;
    std::map<std::string, std::string> slotUnits;
    std::map<std::string, std::string> slotSteps;
    std::map<std::string, std::string> deviceKeys;

    MapFacts(clang::ASTContext &context) : context(context), policy(context.getLangOpts()) {}

    bool empty() const {
        return slots.empty() && syscallKeys.empty() && inFlight.empty() && catchAllKeys.empty() && deviceKeys.empty();
    }

    void analyze(const std::vector<clang::FunctionDecl *> &functions) {
        // Parameters that receive timestamps (cpudist's `update_hist(…, ts)`), callers first
        // found in any order: two rounds follow one helper calling another.
        for (int round = 0; round < 2; round++) {
            for (clang::FunctionDecl *function : functions) {
                Assignments assignments;
                assignments.TraverseStmt(function->getBody());
                Uses uses(*this, assignments);
                Arguments arguments(uses);
                arguments.TraverseStmt(function->getBody());
            }
        }
        for (clang::FunctionDecl *function : functions) {
            Assignments assignments;
            assignments.TraverseStmt(function->getBody());
            Uses uses(*this, assignments);
            uses.TraverseStmt(function->getBody());
            for (const std::string &map : uses.deleted) {
                if (uses.lookedUp.count(map)) inFlight.insert(map);
            }
        }
    }

private:
    clang::ASTContext &context;
    clang::PrintingPolicy policy;
    std::set<const clang::ParmVarDecl *> timestampParameters;

    // `variable.field op= value` (field empty for the variable itself; op `=` also for an
    // initialization), inside `if (condition)`: "NAME" or "!NAME" when the innermost `if` around
    // it tests a global, else empty.
    struct Assignment {
        const clang::VarDecl *variable;
        std::string field;
        const clang::Expr *value;
        clang::BinaryOperatorKind operation;
        std::string condition;
    };

    // Every initialization and assignment in one function.
    struct Assignments : public clang::RecursiveASTVisitor<Assignments> {
        std::vector<Assignment> values;
        std::vector<std::string> conditions;

        std::string condition() const { return conditions.empty() ? "" : conditions.back(); }

        // `if (flag)` or `if (!flag)` on a global: the branches are taken under "flag" / "!flag".
        bool TraverseIfStmt(clang::IfStmt *statement) {
            const clang::Expr *test = statement->getCond()->IgnoreParenImpCasts();
            bool negated = false;
            if (auto *negation = llvm::dyn_cast<clang::UnaryOperator>(test)) {
                if (negation->getOpcode() == clang::UO_LNot) {
                    negated = true;
                    test = negation->getSubExpr()->IgnoreParenImpCasts();
                }
            }
            auto *flag = llvm::dyn_cast<clang::DeclRefExpr>(test);
            auto *global = flag ? llvm::dyn_cast<clang::VarDecl>(flag->getDecl()) : nullptr;
            std::string name = global && global->hasGlobalStorage() ? global->getName().str() : "";
            std::string set = name, unset = name.empty() ? "" : "!" + name;
            if (negated) std::swap(set, unset);
            TraverseStmt(statement->getCond());
            conditions.push_back(set);
            TraverseStmt(statement->getThen());
            conditions.back() = unset;
            TraverseStmt(statement->getElse());
            conditions.pop_back();
            return true;
        }
        bool VisitVarDecl(clang::VarDecl *variable) {
            if (variable->hasInit()) values.push_back({variable, "", variable->getInit(), clang::BO_Assign, condition()});
            return true;
        }
        bool VisitBinaryOperator(clang::BinaryOperator *operation) {
            if (!operation->isAssignmentOp()) return true;
            const clang::Expr *target = operation->getLHS()->IgnoreParenImpCasts();
            std::string field;
            if (auto *member = llvm::dyn_cast<clang::MemberExpr>(target)) {
                if (member->isArrow()) return true;
                field = member->getMemberDecl()->getName().str();
                target = member->getBase()->IgnoreParenImpCasts();
            }
            if (auto *reference = llvm::dyn_cast<clang::DeclRefExpr>(target)) {
                if (auto *variable = llvm::dyn_cast<clang::VarDecl>(reference->getDecl())) {
                    values.push_back({variable, field, operation->getRHS(), operation->getOpcode(), condition()});
                }
            }
            return true;
        }
    };

    // What an expression is made of, as far as these facts care.
    struct Contents : public clang::RecursiveASTVisitor<Contents> {
        const clang::CallExpr *log2Call = nullptr;
        bool timestamp = false;
        bool parameter = false;
        bool opaque = false;
        int depth = 0;
        std::vector<const clang::ParmVarDecl *> parameters;
        const clang::Expr *syscall = nullptr;
        // A disk's major number, and a `<< 20` (MKDEV: the kernel's dev_t is major << 20 | minor).
        bool diskMajor = false;
        bool minorShift = false;
        std::vector<const clang::VarDecl *> variables;

        bool VisitCallExpr(clang::CallExpr *call) {
            std::string name = calleeName(call);
            if ((name.find("log2") != std::string::npos || name.rfind("__builtin_clz", 0) == 0) && !log2Call) log2Call = call;
            // A function of the probe under another name: log2 if it calls one, else it may
            // compute anything (BPF helpers and builtins have no body and say nothing).
            const clang::FunctionDecl *callee = call->getDirectCallee();
            if (!log2Call && callee && callee->hasBody() && name.find("log2") == std::string::npos) {
                Contents inside;
                inside.depth = depth + 1;
                // Helpers of helpers, a few deep (and never round a recursive call forever).
                if (depth < 3) inside.TraverseStmt(callee->getBody());
                if (inside.log2Call) log2Call = call;
                else opaque = true;
            }
            if (name.rfind("bpf_ktime_get_", 0) == 0) timestamp = true;
            return true;
        }
        bool VisitDeclRefExpr(clang::DeclRefExpr *reference) {
            if (auto *argument = llvm::dyn_cast<clang::ParmVarDecl>(reference->getDecl())) {
                parameter = true;
                parameters.push_back(argument);
            }
            else if (auto *variable = llvm::dyn_cast<clang::VarDecl>(reference->getDecl())) {
                if (variable->isLocalVarDecl()) variables.push_back(variable);
            }
            return true;
        }
        bool VisitBinaryOperator(clang::BinaryOperator *operation) {
            auto *shift = llvm::dyn_cast<clang::IntegerLiteral>(operation->getRHS()->IgnoreParenImpCasts());
            if (operation->getOpcode() == clang::BO_Shl && shift && shift->getValue() == 20) minorShift = true;
            return true;
        }
        bool VisitMemberExpr(clang::MemberExpr *member) {
            if (isSyscallNumber(member)) syscall = member;
            if (isDiskMajor(member)) diskMajor = true;
            return true;
        }
    };

    // `&name` of a variable in the maps section.
    static bool isMap(const clang::Expr *argument) {
        auto *address = llvm::dyn_cast<clang::UnaryOperator>(argument->IgnoreParenImpCasts());
        auto *reference = address ? llvm::dyn_cast<clang::DeclRefExpr>(address->getSubExpr()->IgnoreParenImpCasts()) : nullptr;
        auto *section = reference ? reference->getDecl()->getAttr<clang::SectionAttr>() : nullptr;
        return section && (section->getName() == ".maps" || section->getName() == "maps");
    }

    // `disk->major` of a `struct gendisk` (inside BPF_CORE_READ(disk, major)).
    static bool isDiskMajor(const clang::MemberExpr *member) {
        clang::QualType base = member->getBase()->getType();
        if (member->isArrow() && base->isPointerType()) base = base->getPointeeType();
        const clang::RecordDecl *record = base->getAsRecordDecl();
        return record && record->getName() == "gendisk" && member->getMemberDecl()->getName() == "major";
    }

    // `args->id` of a raw_syscalls tracepoint, `ctx->nr` of a syscalls one.
    static bool isSyscallNumber(const clang::MemberExpr *member) {
        clang::QualType base = member->getBase()->getType();
        if (member->isArrow() && base->isPointerType()) base = base->getPointeeType();
        const clang::RecordDecl *record = base->getAsRecordDecl();
        if (!record) return false;
        std::string type = record->getName().str(), field = member->getMemberDecl()->getName().str();
        if (field == "id") return type == "trace_event_raw_sys_enter" || type == "trace_event_raw_sys_exit";
        return field == "nr" && (type == "syscall_trace_enter" || type == "syscall_trace_exit");
    }

    struct Uses : public clang::RecursiveASTVisitor<Uses> {
        MapFacts &facts;
        const Assignments &assignments;
        std::set<std::string> lookedUp, deleted;
        Uses(MapFacts &facts, const Assignments &assignments) : facts(facts), assignments(assignments) {}

        // The log2 call a value of `variable` comes from, following other variables; null for
        // none. `opaque`: some value comes from a function of the probe that is not a log2.
        const clang::CallExpr *fromLog2(const clang::VarDecl *variable, std::set<const clang::VarDecl *> &seen, bool &opaque) {
            if (!seen.insert(variable).second) return nullptr;
            for (const Assignment &entry : assignments.values) {
                if (entry.variable != variable) continue;
                Contents contents;
                contents.TraverseStmt(const_cast<clang::Expr *>(entry.value));
                if (contents.log2Call) return contents.log2Call;
                opaque = opaque || contents.opaque;
                for (const clang::VarDecl *other : contents.variables) {
                    if (const clang::CallExpr *call = fromLog2(other, seen, opaque)) return call;
                }
            }
            return nullptr;
        }

        // Whether a value assigned to `variable` is, or is computed from, a bpf_ktime_get_*ns() reading.
        bool fromTimestamp(const clang::VarDecl *variable, std::set<const clang::VarDecl *> &seen) {
            if (!seen.insert(variable).second) return false;
            for (const Assignment &entry : assignments.values) {
                if (entry.variable != variable || entry.operation != clang::BO_Assign) continue;
                Contents contents;
                contents.TraverseStmt(const_cast<clang::Expr *>(entry.value));
                if (timestamped(contents, seen)) return true;
            }
            return false;
        }

        // Whether what an expression is made of includes a timestamp: a reading, a variable
        // assigned one, a parameter passed one.
        bool timestamped(const Contents &contents, std::set<const clang::VarDecl *> &seen) {
            if (contents.timestamp) return true;
            for (const clang::ParmVarDecl *parameter : contents.parameters) {
                if (facts.timestampParameters.count(parameter)) return true;
            }
            for (const clang::VarDecl *other : contents.variables) {
                if (fromTimestamp(other, seen)) return true;
            }
            return false;
        }

        // The product of the constant divisors in `expression` (`delta / 1000` → 1000, `len >> 10` → 1024).
        uint64_t divisors(const clang::Expr *expression) {
            struct Divisions : public clang::RecursiveASTVisitor<Divisions> {
                clang::ASTContext &context;
                uint64_t product = 1;
                explicit Divisions(clang::ASTContext &context) : context(context) {}
                bool VisitBinaryOperator(clang::BinaryOperator *operation) {
                    clang::Expr::EvalResult result;
                    if (!operation->getRHS()->EvaluateAsInt(result, context) || !result.Val.getInt().isStrictlyPositive()) return true;
                    uint64_t amount = result.Val.getInt().getLimitedValue();
                    switch (operation->getOpcode()) {
                    case clang::BO_Div: case clang::BO_DivAssign: product *= amount; break;
                    case clang::BO_Shr: case clang::BO_ShrAssign: if (amount < 32) product <<= amount; break;
                    default: break;
                    }
                    return true;
                }
            } divisions(facts.context);
            divisions.TraverseStmt(const_cast<clang::Expr *>(expression));
            return divisions.product;
        }

        static std::string timeUnit(uint64_t divisor) {
            if (divisor == 1) return "nsecs";
            if (divisor == 1000) return "usecs";
            if (divisor == 1000000) return "msecs";
            return {};
        }

        // See `slotUnits`: the unit of the quantity a log2 slot index is taken of.
        std::string unit(const clang::Expr *quantity) {
            Contents contents;
            contents.TraverseStmt(const_cast<clang::Expr *>(quantity));
            std::set<const clang::VarDecl *> seen;
            if (!timestamped(contents, seen)) return {};
            // Divisors by the condition they are applied under ("" for always).
            std::map<std::string, uint64_t> divided{{"", divisors(quantity)}};
            for (const clang::VarDecl *variable : contents.variables) {
                for (const Assignment &entry : assignments.values) {
                    if (entry.variable != variable || !entry.field.empty()) continue;
                    uint64_t divisor = 1;
                    if (entry.operation == clang::BO_Assign) {
                        divisor = divisors(entry.value);
                    } else if (entry.operation == clang::BO_DivAssign) {
                        clang::Expr::EvalResult result;
                        if (!entry.value->EvaluateAsInt(result, facts.context) || !result.Val.getInt().isStrictlyPositive()) return {};
                        divisor = result.Val.getInt().getLimitedValue();
                    } else if (entry.operation != clang::BO_AddAssign && entry.operation != clang::BO_SubAssign) {
                        return {};  // scaled some other way: no unit is sure
                    }
                    divided.emplace(entry.condition, 1).first->second *= divisor;
                }
            }
            uint64_t always = divided[""];
            divided.erase("");
            if (divided.empty()) return timeUnit(always);
            std::string flag = divided.begin()->first;
            if (flag[0] == '!') flag.erase(0, 1);
            if (divided.size() > 2 || (divided.size() == 2 && !divided.count("!" + flag))) return {};
            std::string set = timeUnit(always * (divided.count(flag) ? divided[flag] : 1));
            std::string unset = timeUnit(always * (divided.count("!" + flag) ? divided["!" + flag] : 1));
            if (set.empty() || unset.empty()) return {};
            return flag + "?" + set + ":" + unset;
        }

        // `h->slots[i]` (keyed by the struct's spelling), or `hist[i]` of a global integer array
        // with a log2 index (funclatency's; keyed by the global's name: an array indexed by a
        // plain number is a set of counters, softirqs' `time[vec]`, not a histogram).
        bool VisitArraySubscriptExpr(clang::ArraySubscriptExpr *subscript) {
            const clang::Expr *base = subscript->getBase()->IgnoreParenImpCasts();
            std::string key;
            bool array = false;
            if (auto *member = llvm::dyn_cast<clang::MemberExpr>(base)) {
                auto *field = llvm::dyn_cast<clang::FieldDecl>(member->getMemberDecl());
                if (!field || field->getName() != "slots") return true;
                key = clang::QualType(field->getParent()->getTypeForDecl(), 0).getAsString(facts.policy);
            } else if (auto *reference = llvm::dyn_cast<clang::DeclRefExpr>(base)) {
                auto *global = llvm::dyn_cast<clang::VarDecl>(reference->getDecl());
                const clang::ArrayType *type = global ? facts.context.getAsArrayType(global->getType()) : nullptr;
                if (!type || !global->hasGlobalStorage() || global->hasAttr<clang::SectionAttr>()) return true;
                if (type->getElementType()->isRecordType()) {
                    catchAllIndex(global->getName().str(), subscript->getIdx());
                    return true;
                }
                if (!type->getElementType()->isIntegerType()) return true;
                key = global->getName().str();
                array = true;
            } else {
                return true;
            }
            Contents contents;
            contents.TraverseStmt(subscript->getIdx());
            const clang::CallExpr *log2 = contents.log2Call;
            bool opaque = contents.opaque;
            std::set<const clang::VarDecl *> seen;
            for (const clang::VarDecl *variable : contents.variables) {
                if (!log2) log2 = fromLog2(variable, seen, opaque);
            }
            if (log2) {
                facts.slots[key] = "log2";
                std::string unit = log2->getNumArgs() == 1 ? this->unit(log2->getArg(0)) : "";
                if (!unit.empty()) facts.slotUnits[key] = unit;
            }
            else if (!array && !contents.parameter && !opaque && facts.slots.emplace(key, "linear").second) {
                uint64_t step = divisors(subscript->getIdx());
                for (const clang::VarDecl *variable : contents.variables) {
                    for (const Assignment &entry : assignments.values) {
                        if (entry.variable == variable && entry.operation == clang::BO_Assign) step *= divisors(entry.value);
                    }
                }
                if (step > 1) facts.slotSteps[key] = std::to_string(step);
            }
            return true;
        }

        // Lookups and deletions (for `inFlight`), timestamps stored, and calls that pass
        // `&map, &key` (a map helper or a wrapper such as bpf_map_lookup_or_try_init): what the
        // key holds (a syscall number, a catch-all constant).
        bool VisitCallExpr(clang::CallExpr *call) {
            std::string callee = calleeName(call);
            std::string first = call->getNumArgs() > 0 && isMap(call->getArg(0)) ? mapName(call->getArg(0)) : "";
            if (callee == "bpf_map_lookup_elem") lookedUp.insert(first);
            if (callee == "bpf_map_delete_elem") deleted.insert(first);
            if (callee == "bpf_map_update_elem" && !first.empty() && call->getNumArgs() >= 3 && storesTimestamp(call->getArg(2))) {
                facts.inFlight.insert(first);
            }
            for (unsigned index = 0; index + 1 < call->getNumArgs(); index++) {
                std::string map = mapName(call->getArg(index));
                if (map.empty() || !isMap(call->getArg(index))) continue;
                const clang::Expr *key = call->getArg(index + 1)->IgnoreParenImpCasts();
                auto *address = llvm::dyn_cast<clang::UnaryOperator>(key);
                if (!address || address->getOpcode() != clang::UO_AddrOf) continue;
                auto *reference = llvm::dyn_cast<clang::DeclRefExpr>(address->getSubExpr()->IgnoreParenImpCasts());
                auto *variable = reference ? llvm::dyn_cast<clang::VarDecl>(reference->getDecl()) : nullptr;
                if (!variable) continue;
                for (const Assignment &entry : assignments.values) {
                    if (entry.variable != variable) continue;
                    syscallKey(map, entry.field, entry.value);
                    if (!entry.field.empty() && entry.operation == clang::BO_Assign) {
                        Contents contents;
                        contents.TraverseStmt(const_cast<clang::Expr *>(entry.value));
                        if (contents.diskMajor && contents.minorShift) facts.deviceKeys[map] = entry.field;
                    }
                    if (entry.field.empty() && entry.operation == clang::BO_Assign) catchAllKey(map, variable, entry.value);
                }
                if (variable->getType()->isRecordType() && zeroUnlessFlagged(variable)) facts.catchAllKeys[map] = "{}";
            }
            return true;
        }

        // `&ts` where every value assigned to `ts` is a timestamp, or `&ts` of a parameter passed one.
        bool storesTimestamp(const clang::Expr *argument) {
            auto *address = llvm::dyn_cast<clang::UnaryOperator>(argument->IgnoreParenImpCasts());
            if (!address || address->getOpcode() != clang::UO_AddrOf) return false;
            auto *reference = llvm::dyn_cast<clang::DeclRefExpr>(address->getSubExpr()->IgnoreParenImpCasts());
            if (auto *parameter = reference ? llvm::dyn_cast<clang::ParmVarDecl>(reference->getDecl()) : nullptr) {
                return facts.timestampParameters.count(parameter) > 0;
            }
            auto *variable = reference ? llvm::dyn_cast<clang::VarDecl>(reference->getDecl()) : nullptr;
            bool any = false;
            for (const Assignment &entry : assignments.values) {
                if (entry.variable != variable) continue;
                if (!entry.field.empty()) return false;
                Contents contents;
                contents.TraverseStmt(const_cast<clang::Expr *>(entry.value));
                std::set<const clang::VarDecl *> seen;
                if (!timestamped(contents, seen)) return false;
                any = true;
            }
            return any;
        }

        // `key = -1`: the constant, converted to the key's integer type.
        void catchAllKey(const std::string &map, const clang::VarDecl *variable, const clang::Expr *value) {
            clang::QualType type = variable->getType();
            clang::Expr::EvalResult result;
            if (!type->isIntegerType() || value->isValueDependent() || !value->EvaluateAsInt(result, facts.context)) return;
            llvm::APSInt constant = result.Val.getInt();
            constant = constant.extOrTrunc(facts.context.getIntWidth(type));
            constant.setIsSigned(type->isSignedIntegerType());
            facts.catchAllKeys[map] = llvm::toString(constant, 10);
        }

        // `hists[cpu]` of a global array of structs (runqlen's), where `cpu` starts as a constant
        // and changes only under `if (flag)`: that constant is the catch-all index while the flag
        // is unset (with the flag set it is one CPU among others).
        void catchAllIndex(const std::string &global, const clang::Expr *index) {
            auto *reference = llvm::dyn_cast<clang::DeclRefExpr>(index->IgnoreParenImpCasts());
            auto *variable = reference ? llvm::dyn_cast<clang::VarDecl>(reference->getDecl()) : nullptr;
            if (!variable || !variable->getType()->isIntegerType() || !variable->hasInit()) return;
            clang::Expr::EvalResult result;
            if (!variable->getInit()->EvaluateAsInt(result, facts.context)) return;
            std::string flag;
            for (const Assignment &entry : assignments.values) {
                if (entry.variable != variable || entry.value == variable->getInit()) continue;
                if (entry.condition.empty() || entry.condition[0] == '!' || (!flag.empty() && flag != entry.condition)) return;
                flag = entry.condition;
            }
            if (flag.empty()) return;
            facts.catchAllKeys[global] = llvm::toString(result.Val.getInt(), 10);
            facts.catchAllKeyConditions[global] = "!" + flag;
        }

        // A struct variable initialized to `{}` whose fields are assigned only under `if (global)`.
        bool zeroUnlessFlagged(const clang::VarDecl *variable) {
            auto *list = variable->hasInit() ? llvm::dyn_cast<clang::InitListExpr>(variable->getInit()->IgnoreParenImpCasts()) : nullptr;
            if (!list) return false;
            for (const clang::Expr *item : list->inits()) {
                clang::Expr::EvalResult result;
                if (!item->EvaluateAsInt(result, facts.context) || result.Val.getInt() != 0) return false;
            }
            bool fieldSet = false;
            for (const Assignment &entry : assignments.values) {
                if (entry.variable != variable || entry.value == variable->getInit()) continue;
                if (entry.field.empty() || entry.condition.empty()) return false;
                fieldSet = true;
            }
            return fieldSet;
        }

        void syscallKey(const std::string &map, const std::string &field, const clang::Expr *value) {
            value = value->IgnoreParenImpCasts();
            std::string condition;
            if (auto *choice = llvm::dyn_cast<clang::ConditionalOperator>(value)) {
                Contents whenTrue, whenFalse;
                whenTrue.TraverseStmt(choice->getTrueExpr());
                whenFalse.TraverseStmt(choice->getFalseExpr());
                auto *flag = llvm::dyn_cast<clang::DeclRefExpr>(choice->getCond()->IgnoreParenImpCasts());
                auto *global = flag ? llvm::dyn_cast<clang::VarDecl>(flag->getDecl()) : nullptr;
                if (!global || !global->hasGlobalStorage() || (whenTrue.syscall != nullptr) == (whenFalse.syscall != nullptr)) return;
                condition = (whenTrue.syscall ? "" : "!") + global->getName().str();
            } else {
                Contents contents;
                contents.TraverseStmt(const_cast<clang::Expr *>(value));
                if (!contents.syscall) return;
            }
            facts.syscallKeys[map] = field;
            if (!condition.empty()) facts.syscallKeyConditions[map] = condition;
        }
    };

    // Marks the parameters of the functions called in one function that it passes timestamps.
    struct Arguments : public clang::RecursiveASTVisitor<Arguments> {
        Uses &uses;
        explicit Arguments(Uses &uses) : uses(uses) {}

        bool VisitCallExpr(clang::CallExpr *call) {
            const clang::FunctionDecl *callee = call->getDirectCallee();
            if (!callee) return true;
            // The parameters the body refers to are the definition's.
            if (const clang::FunctionDecl *definition = callee->getDefinition()) callee = definition;
            for (unsigned index = 0; index < call->getNumArgs() && index < callee->getNumParams(); index++) {
                Contents contents;
                contents.TraverseStmt(call->getArg(index));
                std::set<const clang::VarDecl *> seen;
                if (uses.timestamped(contents, seen)) uses.facts.timestampParameters.insert(callee->getParamDecl(index));
            }
            return true;
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
        // A list of its own: walking a body can deserialize declarations from a precompiled
        // header, which reach HandleTopLevelDecl and would grow `functions` under the loops.
        const std::vector<clang::FunctionDecl *> probeFunctions = reachable(context, functions);
        for (clang::FunctionDecl *function : probeFunctions) externs.TraverseStmt(function->getBody());
        for (clang::VarDecl *variable : externs.found) codegen->CompleteExternalDeclaration(variable);

        if (hasMetadata || !input->write_metadata || !sema) return;
        EventTypes events;
        events.analyze(probeFunctions);
        MapFacts facts(context);
        facts.analyze(probeFunctions);
        if (events.found.empty() && facts.empty()) return;
        emitMetadata(context, events.found, facts);
    }

private:
    clang::ASTConsumer *codegen;
    const clang_bpf_input *input;
    std::vector<clang::FunctionDecl *> functions;
    bool hasMetadata = false;
    clang::Sema *sema = nullptr;

    // Function bodies a function refers to (calls, or takes the address of).
    struct Callees : public clang::RecursiveASTVisitor<Callees> {
        std::vector<clang::FunctionDecl *> found;

        bool VisitDeclRefExpr(clang::DeclRefExpr *reference) {
            if (auto *function = llvm::dyn_cast<clang::FunctionDecl>(reference->getDecl())) {
                if (const clang::FunctionDecl *definition = function->getDefinition()) {
                    found.push_back(const_cast<clang::FunctionDecl *>(definition));
                }
            }
            return true;
        }
    };

    // The probe's functions (those of its own file, and programs placed in a section) and every
    // function they reach: first in the order they were parsed, then those read from a
    // precompiled header, in the order they were reached. The rest, the thousands of inline
    // functions of the kernel headers, can neither send events nor use the probe's maps, and
    // walking them all took a seventh of a first run's compile.
    static std::vector<clang::FunctionDecl *> reachable(clang::ASTContext &context, const std::vector<clang::FunctionDecl *> &all) {
        clang::SourceManager &sources = context.getSourceManager();
        std::set<const clang::FunctionDecl *> seen;
        std::vector<clang::FunctionDecl *> found;
        for (clang::FunctionDecl *function : all) {
            if ((sources.isInMainFile(function->getLocation()) || function->hasAttr<clang::SectionAttr>()) &&
                seen.insert(function).second) {
                found.push_back(function);
            }
        }
        for (size_t next = 0; next < found.size(); next++) {
            Callees callees;
            callees.TraverseStmt(found[next]->getBody());
            for (clang::FunctionDecl *callee : callees.found) {
                if (seen.insert(callee).second) found.push_back(callee);
            }
        }
        std::vector<clang::FunctionDecl *> ordered;
        std::set<const clang::FunctionDecl *> parsed;
        for (clang::FunctionDecl *function : all) {
            if (seen.count(function)) {
                ordered.push_back(function);
                parsed.insert(function);
            }
        }
        for (clang::FunctionDecl *function : found) {
            if (!parsed.count(function)) ordered.push_back(function);
        }
        return ordered;
    }

    void emitMetadata(clang::ASTContext &context, const std::vector<std::pair<std::string, clang::QualType>> &found,
                      const MapFacts &facts) {
        clang::PrintingPolicy policy(context.getLangOpts());
        std::vector<std::string> tables, keys, values, maps;
        auto add = [&](const char *table, const std::string &key, const std::string &value) {
            tables.push_back(table);
            keys.push_back(key);
            values.push_back(value);
        };
        for (const auto &entry : found) {
            maps.push_back(entry.first);
            add("events", entry.first, entry.second.getAsString(policy));
        }
        for (const auto &entry : facts.slots) add("slots", entry.first, entry.second);
        for (const auto &entry : facts.syscallKeys) add("syscallKeys", entry.first, entry.second);
        for (const auto &entry : facts.syscallKeyConditions) add("syscallKeyConditions", entry.first, entry.second);
        for (const std::string &map : facts.inFlight) add("inFlight", map, "");
        for (const auto &entry : facts.catchAllKeys) add("catchAllKeys", entry.first, entry.second);
        for (const auto &entry : facts.catchAllKeyConditions) add("catchAllKeyConditions", entry.first, entry.second);
        for (const auto &entry : facts.slotUnits) add("slotUnits", entry.first, entry.second);
        for (const auto &entry : facts.slotSteps) add("slotSteps", entry.first, entry.second);
        for (const auto &entry : facts.deviceKeys) add("deviceKeys", entry.first, entry.second);
        std::vector<const char *> tablePointers, keyPointers, valuePointers;
        for (size_t i = 0; i < tables.size(); i++) {
            tablePointers.push_back(tables[i].c_str());
            keyPointers.push_back(keys[i].c_str());
            valuePointers.push_back(values[i].c_str());
        }
        char *json = input->write_metadata(tablePointers.data(), keyPointers.data(), valuePointers.data(), tables.size());
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
