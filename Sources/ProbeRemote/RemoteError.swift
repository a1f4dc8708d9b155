import KprobeSupport

/// A failure talking to a device over adb. Missing devices, tools or device builds are usage
/// problems (2) with the step that fixes them; adb or the device failing mid-way is internal (1).
public typealias RemoteError = Failure
