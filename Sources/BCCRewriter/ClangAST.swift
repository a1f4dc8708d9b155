import CClang
import ProbeCompiler
import KprobeSupport
#if canImport(Glibc)
import Glibc
#endif

/// One parsed translation unit, freed with its index.
final class ParsedUnit {
    let index: CXIndex
    let unit: CXTranslationUnit
    let mainFile: CXFile

    init(source: String, path: String, triple: String, arguments: [String], files: [VirtualFile]) throws(Failure) {
        guard let index = clang_createIndex(0, 0) else {
            throw Failure(.internal, "libclang could not create an index (out of memory?)")
        }
        self.index = index
        let allArguments = ["-x", "c", "--target=\(triple)"] + arguments + [BCCPrelude.includeArgument, "-include", BCCPrelude.preludePath, "-ferror-limit=0"]
        let unsaved = [VirtualFile(path: path, contents: source)] + files
        let argumentCopies = allArguments.map { strdup($0) }
        let pathCopies = unsaved.map { strdup($0.path) }
        let contentCopies = unsaved.map { strdup($0.contents) }
        defer {
            for pointer in argumentCopies + pathCopies + contentCopies { free(pointer) }
        }
        var unsavedFiles: [CXUnsavedFile] = []
        for i in unsaved.indices {
            unsavedFiles.append(CXUnsavedFile(Filename: pathCopies[i], Contents: contentCopies[i], Length: UInt(strlen(contentCopies[i]!))))
        }
        var parsed: CXTranslationUnit?
        let options = CXTranslationUnit_DetailedPreprocessingRecord.rawValue | CXTranslationUnit_KeepGoing.rawValue
        let status = argumentCopies.withUnsafeBufferPointer { argumentPointers in
            argumentPointers.withMemoryRebound(to: UnsafePointer<CChar>?.self) { constArguments in
                clang_parseTranslationUnit2(index, path, constArguments.baseAddress, Int32(constArguments.count),
                                            &unsavedFiles, UInt32(unsavedFiles.count), options, &parsed)
            }
        }
        guard status == CXError_Success, let parsed else {
            clang_disposeIndex(index)
            throw Failure(.internal, "libclang could not parse \(path) (error \(status.rawValue)); check that the compiler arguments are valid")
        }
        unit = parsed
        guard let file = clang_getFile(parsed, path) else {
            clang_disposeTranslationUnit(parsed)
            clang_disposeIndex(index)
            throw Failure(.internal, "libclang lost the main file \(path) while parsing it")
        }
        mainFile = file
    }

    deinit {
        clang_disposeTranslationUnit(unit)
        clang_disposeIndex(index)
    }

    /// Error diagnostics, formatted as clang prints them, or nil when there are none.
    func errors() -> String? {
        var lines: [String] = []
        var hasError = false
        for i in 0..<clang_getNumDiagnostics(unit) {
            let diagnostic = clang_getDiagnostic(unit, i)
            defer { clang_disposeDiagnostic(diagnostic) }
            let severity = clang_getDiagnosticSeverity(diagnostic)
            guard severity.rawValue >= CXDiagnostic_Error.rawValue else { continue }
            hasError = true
            // Presumed locations honour #line, as the compiler's own diagnostics do.
            var file = CXString()
            var line: UInt32 = 0
            var column: UInt32 = 0
            clang_getPresumedLocation(clang_getDiagnosticLocation(diagnostic), &file, &line, &column)
            let name = string(file)
            let text = string(clang_getDiagnosticSpelling(diagnostic))
            let label = severity == CXDiagnostic_Fatal ? "fatal error" : "error"
            lines.append(name.isEmpty ? "\(label): \(text)" : "\(name):\(line):\(column): \(label): \(text)")
        }
        return hasError ? lines.joined(separator: "\n") : nil
    }

    var root: CXCursor { clang_getTranslationUnitCursor(unit) }

    func tokens(in range: CXSourceRange) -> [(spelling: String, offset: Int)] {
        var tokens: UnsafeMutablePointer<CXToken>?
        var count: UInt32 = 0
        clang_tokenize(unit, range, &tokens, &count)
        guard let tokens else { return [] }
        defer { clang_disposeTokens(unit, tokens, count) }
        var result: [(String, Int)] = []
        for i in 0..<Int(count) {
            let location = clang_getTokenLocation(unit, tokens[i])
            var offset: UInt32 = 0
            clang_getSpellingLocation(location, nil, nil, nil, &offset)
            result.append((string(clang_getTokenSpelling(unit, tokens[i])), Int(offset)))
        }
        return result
    }
}

func string(_ value: CXString) -> String {
    defer { clang_disposeString(value) }
    guard let c = clang_getCString(value) else { return "" }
    return String(cString: c)
}

private final class ChildCollector {
    var children: [CXCursor] = []
}

func children(of cursor: CXCursor) -> [CXCursor] {
    let collector = ChildCollector()
    let box = Unmanaged.passRetained(collector)
    defer { box.release() }
    clang_visitChildren(cursor, { child, _, data in
        let collector = Unmanaged<ChildCollector>.fromOpaque(data!).takeUnretainedValue()
        collector.children.append(child)
        return CXChildVisit_Continue
    }, box.toOpaque())
    return collector.children
}

extension CXCursor {
    var kind: CXCursorKind { clang_getCursorKind(self) }
    var spelling: String { string(clang_getCursorSpelling(self)) }
    var type: CXType { clang_getCursorType(self) }
    var referenced: CXCursor { clang_getCursorReferenced(self) }
    var usr: String { string(clang_getCursorUSR(self)) }
}

extension CXType {
    var canonical: CXType { clang_getCanonicalType(self) }
    var spelling: String { string(clang_getTypeSpelling(self)) }
    var pointee: CXType { clang_getPointeeType(self) }
    var isPointer: Bool { canonical.kind == CXType_Pointer }
    var isArray: Bool {
        let kind = canonical.kind
        return kind == CXType_ConstantArray || kind == CXType_IncompleteArray || kind == CXType_VariableArray
    }
}

/// Byte offsets of a location in the main file, as a compiler maps it to the file: macro
/// arguments to where they are written, other macro tokens to the macro's use.
func fileOffset(_ location: CXSourceLocation, in file: CXFile) -> Int? {
    var where_: CXFile?
    var offset: UInt32 = 0
    clang_getSpellingLocation(location, &where_, nil, nil, &offset)
    guard let where_, where_ == file else { return nil }
    return Int(offset)
}
