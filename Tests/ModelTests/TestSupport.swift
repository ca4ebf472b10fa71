import Foundation
@testable import Model
import Testing

/// Where the tests find their inputs.
enum TestAssets {
    /// Folder of scripts/fetch-test-assets.sh: $COMET_ASSETS or ~/.cache/comet/assets.
    static let folder: String = {
        let env = ProcessInfo.processInfo.environment
        return env["COMET_ASSETS"] ?? (NSHomeDirectory() + "/.cache/comet/assets")
    }()

    /// SmolLM2-135M-Instruct.Q4_1.gguf: $COMET_TEST_GGUF, else the fetch script's location; nil when absent.
    static let smolLM2Path: String? = {
        let path = ProcessInfo.processInfo.environment["COMET_TEST_GGUF"]
            ?? folder + "/SmolLM2-135M-Instruct.Q4_1.gguf"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()

    static let missingSmolLM2: Comment =
        "SmolLM2 GGUF not found (set COMET_TEST_GGUF or run scripts/fetch-test-assets.sh, which unpacks it into \(folder))"

    /// The file, opened once for all tests.
    static let smolLM2: GGUFFile? = smolLM2Path.flatMap { try? GGUFFile(path: $0) }

    static func requireSmolLM2() throws -> GGUFFile {
        try #require(smolLM2, "could not open \(smolLM2Path ?? "SmolLM2 GGUF")")
    }
}

/// The JSON fixtures in Tests/ModelTests/Fixtures, written by scripts/make_golden_*.py.
enum Fixtures {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func load<T: Decodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        let data = try Data(contentsOf: folder.appendingPathComponent(name))
        return try JSONDecoder().decode(T.self, from: data)
    }

    struct TokenizerCase: Decodable {
        var text: String
        var ids: [Int32]
        /// The oracle's decode of `ids` (SentencePiece fixtures only).
        var decoded: String?
    }

    struct TokenizerCases: Decodable {
        var cases: [TokenizerCase]
    }
}

/// A unique path in the temporary folder, removed by the caller's `defer`.
func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString)-\(name)").path
}

/// Writes `bytes` to a new temporary file, opens it as GGUF and removes the file again.
func openGGUF(_ bytes: [UInt8]) throws -> GGUFFile {
    let path = temporaryPath("test.gguf")
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try GGUFFile(path: path)
}

/// `body` throws a ModelError matching `matches` (and nothing else, and does not crash).
func expectModelError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation,
                      _ matches: (ModelError) -> Bool) {
    do {
        try body()
        Issue.record("expected a ModelError, got success", sourceLocation: sourceLocation)
    } catch let error as ModelError {
        #expect(matches(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
        #expect(!error.description.isEmpty, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a ModelError, got \(error)", sourceLocation: sourceLocation)
    }
}
