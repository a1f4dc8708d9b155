#ifndef KPROBE_RUN_PROBE_CONSUMER_H
#define KPROBE_RUN_PROBE_CONSUMER_H

// What the worker adds to clang's code generation of a probe (see probe_consumer.cpp).

#include "clang_bpf.h"

#include <clang/AST/ASTConsumer.h>
#include <clang/Frontend/CompilerInstance.h>
#include <clang/Frontend/MultiplexConsumer.h>

#include <memory>
#include <vector>

namespace kprobe_run {

// Code generation's consumer with the probe consumer in front of it.
std::unique_ptr<clang::ASTConsumer> probeConsumer(std::unique_ptr<clang::ASTConsumer> codegen, const clang_bpf_input *input);

// A code-generating action (EmitObjAction, EmitLLVMOnlyAction) whose consumer is wrapped by
// probeConsumer.
template <class Action> class ProbeAction : public Action {
public:
    template <class... Arguments>
    explicit ProbeAction(const clang_bpf_input *input, Arguments &&...arguments)
        : Action(std::forward<Arguments>(arguments)...), input(input) {}

protected:
    std::unique_ptr<clang::ASTConsumer> CreateASTConsumer(clang::CompilerInstance &compiler, llvm::StringRef file) override {
        std::unique_ptr<clang::ASTConsumer> codegen = Action::CreateASTConsumer(compiler, file);
        if (!codegen) return nullptr;
        return probeConsumer(std::move(codegen), input);
    }

private:
    const clang_bpf_input *input;
};

} // namespace kprobe_run

#endif
