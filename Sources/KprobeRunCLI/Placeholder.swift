import ArgumentParser
public struct KprobeRunCommand: ParsableCommand {
    public init() {}
    public func run() {}
}
