/// The bytes exchanged with `kprobe-run-cc` (and `kprobe-run-bcc`): one request on its stdin,
/// one response on its stdout. Length-prefixed binary rather than JSON, because the object and vmlinux.h (several
/// megabytes) would otherwise be escaped and parsed character by character.
///
/// Every integer is little-endian; a string or byte array is a UInt32 length and the bytes.
public enum WorkerProtocol {
    static let requestMagic: [UInt8] = Array("KRCQ".utf8)
    static let responseMagic: [UInt8] = Array("KRCR".utf8)
    static let version: UInt32 = 5

    public struct MalformedMessage: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// The worker's answer. `status` is the shim's code: 0 when `elf` holds an object.
    public struct Response: Sendable, Equatable {
        public var status: Int32
        public var elf: [UInt8]
        public var diagnostics: String
        /// Every file the compile read (see CompiledObject.dependencies).
        public var dependencies: [String]
        /// What happened with the precompiled header, for -v.
        public var notes: [String]

        public init(status: Int32, elf: [UInt8], diagnostics: String, dependencies: [String] = [], notes: [String] = []) {
            self.status = status
            self.elf = elf
            self.diagnostics = diagnostics
            self.dependencies = dependencies
            self.notes = notes
        }
    }

    public static func encode(_ request: CompileRequest) -> [UInt8] {
        var writer = Writer(magic: requestMagic)
        writer.string(request.sourcePath)
        writer.string(request.source)
        writer.string(request.frontendTriple)
        writer.count(request.arguments.count)
        for argument in request.arguments { writer.string(argument) }
        writer.count(request.virtualFiles.count)
        for file in request.virtualFiles {
            writer.string(file.path)
            writer.string(file.contents)
        }
        writer.string(request.dialect.rawValue)
        writer.string(request.syscallPrefix)
        writer.string(request.cpu?.rawValue ?? "")
        writer.strings(request.precompiledHeaders.map { [$0.directory, $0.headerIdentity] } ?? [])
        writer.strings(request.headerImage.map { [$0.root, $0.lockPath, String($0.size)] } ?? [])
        if let image = request.headerImage {
            writer.count(image.files.count)
            for file in image.files {
                writer.string(file.path)
                writer.uint64(UInt64(file.offset))
                writer.uint64(UInt64(file.size))
            }
        }
        return writer.bytes
    }

    public static func decodeRequest(_ bytes: [UInt8]) throws(MalformedMessage) -> CompileRequest {
        var reader = try Reader(bytes, magic: requestMagic)
        let sourcePath = try reader.string()
        let source = try reader.string()
        let triple = try reader.string()
        var arguments: [String] = []
        for _ in 0..<(try reader.count()) { arguments.append(try reader.string()) }
        var files: [VirtualFile] = []
        for _ in 0..<(try reader.count()) {
            let path = try reader.string()
            files.append(VirtualFile(path: path, contents: try reader.string()))
        }
        let dialectName = try reader.string()
        guard let dialect = Dialect(rawValue: dialectName) else {
            throw MalformedMessage(description: "unknown dialect '\(dialectName)'")
        }
        let syscallPrefix = try reader.string()
        let cpuName = try reader.string()
        guard cpuName.isEmpty || BPFCPU(rawValue: cpuName) != nil else {
            throw MalformedMessage(description: "unknown BPF CPU '\(cpuName)'")
        }
        let settings = try reader.strings()
        guard settings.isEmpty || settings.count == 2 else {
            throw MalformedMessage(description: "precompiled-header settings with \(settings.count) fields")
        }
        let imageFields = try reader.strings()
        var image: HeaderImage?
        if !imageFields.isEmpty {
            guard imageFields.count == 3, let size = Int(imageFields[2]) else {
                throw MalformedMessage(description: "header image with \(imageFields.count) fields")
            }
            var files: [HeaderImage.File] = []
            let count = try reader.count()
            // Each file takes at least 20 bytes: a damaged count cannot make this loop long.
            guard count <= reader.remaining / 20 else { throw MalformedMessage(description: "truncated header image") }
            for _ in 0..<count {
                let path = try reader.string()
                let offset = try reader.uint64(), length = try reader.uint64()
                guard offset <= UInt64(size), length <= UInt64(size) - offset else {
                    throw MalformedMessage(description: "header image file \(path) outside the image")
                }
                files.append(HeaderImage.File(path: path, offset: Int(offset), size: Int(length)))
            }
            image = HeaderImage(root: imageFields[0], descriptor: HeaderImage.workerDescriptor, size: size, files: files,
                                lockPath: imageFields[1])
        }
        try reader.end()
        var request = CompileRequest(sourcePath: sourcePath, source: source, frontendTriple: triple, arguments: arguments, virtualFiles: files,
                                     dialect: dialect, syscallPrefix: syscallPrefix, cpu: BPFCPU(rawValue: cpuName), precompiledHeaders: settings.isEmpty ? nil : PrecompiledHeaderSettings(directory: settings[0], headerIdentity: settings[1]))
        request.headerImage = image
        return request
    }

    /// What `kprobe-run-bcc` answers: the rewritten program as a request for `kprobe-run-cc`
    /// (encoded as a request), or a response saying why it could not be rewritten.
    public enum RewriteAnswer: Sendable, Equatable {
        case rewritten(CompileRequest)
        case failed(Response)
    }

    public static func encode(_ answer: RewriteAnswer) -> [UInt8] {
        switch answer {
        case .rewritten(let request): return encode(request)
        case .failed(let response): return encode(response)
        }
    }

    public static func decodeRewriteAnswer(_ bytes: [UInt8]) throws(MalformedMessage) -> RewriteAnswer {
        if bytes.starts(with: requestMagic) { return .rewritten(try decodeRequest(bytes)) }
        return .failed(try decodeResponse(bytes))
    }

    public static func encode(_ response: Response) -> [UInt8] {
        var writer = Writer(magic: responseMagic)
        writer.uint32(UInt32(bitPattern: response.status))
        writer.bytes(response.elf)
        writer.string(response.diagnostics)
        writer.strings(response.dependencies)
        writer.strings(response.notes)
        return writer.bytes
    }

    public static func decodeResponse(_ bytes: [UInt8]) throws(MalformedMessage) -> Response {
        var reader = try Reader(bytes, magic: responseMagic)
        let status = Int32(bitPattern: try reader.uint32())
        let elf = try reader.bytes()
        let diagnostics = try reader.string()
        let dependencies = try reader.strings()
        let notes = try reader.strings()
        try reader.end()
        return Response(status: status, elf: elf, diagnostics: diagnostics, dependencies: dependencies, notes: notes)
    }

    private struct Writer {
        var bytes: [UInt8]

        init(magic: [UInt8]) {
            bytes = magic
            uint32(WorkerProtocol.version)
        }

        mutating func uint32(_ value: UInt32) {
            for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
        }

        mutating func count(_ value: Int) { uint32(UInt32(value)) }

        mutating func uint64(_ value: UInt64) {
            uint32(UInt32(truncatingIfNeeded: value))
            uint32(UInt32(truncatingIfNeeded: value >> 32))
        }

        mutating func bytes(_ value: [UInt8]) {
            count(value.count)
            bytes.append(contentsOf: value)
        }

        mutating func string(_ value: String) {
            var copy = value
            copy.withUTF8 { utf8 in
                count(utf8.count)
                bytes.append(contentsOf: utf8)
            }
        }

        mutating func strings(_ values: [String]) {
            count(values.count)
            for value in values { string(value) }
        }
    }

    private struct Reader {
        let data: [UInt8]
        var offset = 0

        init(_ data: [UInt8], magic: [UInt8]) throws(MalformedMessage) {
            self.data = data
            guard data.count >= magic.count, Array(data[0..<magic.count]) == magic else {
                throw MalformedMessage(description: "does not start with \(String(decoding: magic, as: UTF8.self))")
            }
            offset = magic.count
            let found = try uint32()
            guard found == WorkerProtocol.version else {
                throw MalformedMessage(description: "protocol version \(found), expected \(WorkerProtocol.version)")
            }
        }

        mutating func uint32() throws(MalformedMessage) -> UInt32 {
            guard data.count - offset >= 4 else { throw MalformedMessage(description: "truncated at byte \(offset)") }
            var value: UInt32 = 0
            for index in 0..<4 { value |= UInt32(data[offset + index]) << UInt32(8 * index) }
            offset += 4
            return value
        }

        mutating func count() throws(MalformedMessage) -> Int { Int(try uint32()) }

        mutating func uint64() throws(MalformedMessage) -> UInt64 {
            let low = UInt64(try uint32())
            return low | UInt64(try uint32()) << 32
        }

        var remaining: Int { data.count - offset }

        mutating func bytes() throws(MalformedMessage) -> [UInt8] {
            let length = try count()
            guard data.count - offset >= length else { throw MalformedMessage(description: "truncated at byte \(offset)") }
            defer { offset += length }
            return Array(data[offset..<(offset + length)])
        }

        mutating func string() throws(MalformedMessage) -> String {
            String(decoding: try bytes(), as: UTF8.self)
        }

        mutating func strings() throws(MalformedMessage) -> [String] {
            let total = try count()
            // Each string takes at least its 4-byte length: a damaged count cannot make this loop long.
            guard total <= (data.count - offset) / 4 else { throw MalformedMessage(description: "truncated at byte \(offset)") }
            var values: [String] = []
            for _ in 0..<total { values.append(try string()) }
            return values
        }

        func end() throws(MalformedMessage) {
            guard offset == data.count else { throw MalformedMessage(description: "\(data.count - offset) trailing bytes") }
        }
    }
}
