import CLibBPF

/// `compile --verify`: loads the object into the kernel, so the verifier checks every program,
/// and unloads it again without attaching anything.
public enum ProgramVerifier {
    /// The names of the programs that passed. Throws `.rejected` with the end of the verifier log
    /// when one did not, `.notPermitted` without the privilege to load.
    public static func verify(object bytes: [UInt8], name: String) throws(RuntimeError) -> [String] {
        let object = try ProbeObject(bytes: bytes, name: name)
        try object.plan(specs: [], requireAttachable: false)
        try object.load()
        return object.programNames
    }
}
