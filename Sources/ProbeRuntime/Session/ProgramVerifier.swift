import CLibBPF
import KprobeSupport

/// `compile --verify`: loads the object into the kernel, so the verifier checks every program,
/// and unloads it again without attaching anything. The programs chosen are those a run would
/// load (`ProgramSelection`, `--only`/`--skip`), with the same map sizes and parameters.
public enum ProgramVerifier {
    /// The names of the programs that passed. When some did not, every failure is reported in one
    /// error (libbpf stops at the first, so the object is reloaded without each failed program
    /// until the rest load); its kind is the first failure's: `.rejected` with the end of the
    /// verifier log, `.notPermitted` without the privilege to load, `.attach` for a missing target.
    public static func verify(object bytes: [UInt8], name: String, options: LoadOptions = LoadOptions(),
                              log: (String) -> Void = { _ in }) throws(RuntimeError) -> [String] {
        var failures: [(program: String, error: RuntimeError)] = []
        while true {
            let object = try ProbeObject(bytes: bytes, name: name)
            try object.prepare(specs: [], options: options, requireAttachable: false, log: failures.isEmpty ? log : { _ in })
            for program in object.programs where failures.contains(where: { $0.program == program.name }) {
                program.program.autoload = false
            }
            let loading = object.programNames.filter { name in !failures.contains { $0.program == name } }
            if failures.isEmpty && loading.isEmpty {
                let leftOut = object.programs.compactMap { program in program.leftOut.map { "- '\(program.name)': \($0)" } }
                throw RuntimeError(.attach, leftOut.isEmpty ? "\(name) has no programs to verify"
                                   : "no program of \(name) can load on this kernel, so nothing was verified:\n" + leftOut.joined(separator: "\n"))
            }
            guard let error = load(object) else {
                guard let first = failures.first else { return loading }
                let accepted = loading.isEmpty ? "" : "\nthe verifier accepted: " + loading.joined(separator: ", ")
                throw RuntimeError(first.error.kind, "\(failures.count) of \(failures.count + loading.count) program(s) failed to load:\n"
                                   + failures.map { "- " + $0.error.message }.joined(separator: "\n") + accepted)
            }
            // Go on without the failed program while libbpf names one and others are left.
            guard error.kind != .internal, let program = object.failedProgram,
                  !failures.contains(where: { $0.program == program }), loading.count > 1 else {
                guard !failures.isEmpty else { throw error }
                failures.append((object.failedProgram ?? name, error))
                throw RuntimeError(failures[0].error.kind, "\(failures.count) program(s) failed to load:\n"
                                   + failures.map { "- " + $0.error.message }.joined(separator: "\n"))
            }
            failures.append((program, error))
        }
    }

    private static func load(_ object: ProbeObject) -> RuntimeError? {
        do {
            try object.load()
            return nil
        } catch {
            return error
        }
    }
}
