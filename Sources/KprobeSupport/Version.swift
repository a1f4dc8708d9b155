/// The tool's version: shown by `--version`, and part of every compile-cache key and of the
/// device-side binary check over adb.
public enum KprobeRunVersion {
    public static let string = "0.1.0"
}
