import CPUReference
import Foundation
@testable import Quant
import Testing

/// A fresh folder under the system temp dir, removed by the caller.
func temporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("comet-quant-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A small checkpoint of two FMPQ linear layers (block sizes 128 and 64, a partial block; the
/// first clipped and with rotated A4 blocks), a KV4 cache with rotated keys, and plain tensors of
/// every other dtype.
func syntheticCheckpoint(using random: inout SplitMix64) throws -> QuantizedCheckpoint {
    let config: JSONValue = .object(["dim": .int(576), "ropeBase": .number(100000.5), "architecture": .string("llama"), "tied": .bool(true)])
    var checkpoint = QuantizedCheckpoint(
        model: config, tokenizer: .init(kind: "gguf", source: "SmolLM2-135M-Instruct.Q4_1.gguf", sha256: String(repeating: "ab", count: 32)),
        calibration: .init(text: "web: Genesis-Malachi", tokens: 16384, contextLength: 512, recipe: FMPQRecipe(budget: .threshold(ratio: 6, maxFraction: 0.25)))
    )
    checkpoint.kvCache = .init(bits: 4, keyRotation: true)
    for (name, k, n, blockSize) in [("blk.0.attn_q", 576, 24, 128), ("blk.0.ffn_down", 320, 16, 64)] {
        let x = activationsWithOutliers(tokens: 32, channels: k, outliers: [1, 7, k - 3], factor: 30, using: &random)
        var stats = CalibrationStatistics(channels: k)
        try stats.add(x, tokens: 32)
        var p = try FMPQPermutation(statistics: stats, budget: .fractionOfBlocks(0.25), blockSize: blockSize)
        if blockSize == 128 { p = try FMPQPermutation(layout: p.layout.with(int4Clip: 0.8, rotation: .int4), permutation: p.permutation) }
        let w = try Int4Weights(roundingToNearest: p.permuteColumns(random.gaussians(n * k), rows: n), outputs: n, layout: p.layout)
        try checkpoint.addLinear(name, weights: w, permutation: p)
    }
    try checkpoint.addTensor("output_norm.weight", Tensor(random.gaussians(576), shape: [576]))
    try checkpoint.addTensor("token_embd.weight", Tensor(random.gaussians(10 * 8).map(BFloat16.init), shape: [10, 8]))
    try checkpoint.addTensor("blk.0.k_smooth", Tensor(random.gaussians(6).map(Float16.init), shape: [2, 3]))
    try checkpoint.addTensor("codes.i8", Tensor(random.int8s(5), shape: [5]))
    try checkpoint.addTensor("empty", Tensor([Int32](), shape: [0, 4]))
    return checkpoint
}

@Suite struct CheckpointTests {
    @Test func roundTripsEverything() throws {
        var (random, seed) = freshGenerator()
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let checkpoint = try syntheticCheckpoint(using: &random)
        let path = folder.appendingPathComponent("ckpt").path
        var written: [String] = []
        try checkpoint.write(to: path) { written.append($0) }
        #expect(written == checkpoint.tensors.keys.sorted())

        let loaded = try QuantizedCheckpoint.load(from: path)
        #expect(loaded == checkpoint, "seed \(seed)")
        let original = try checkpoint.linear("blk.0.ffn_down"), back = try loaded.linear("blk.0.ffn_down")
        #expect(back.weights == original.weights && back.permutation == original.permutation)
        #expect(loaded.layers["blk.0.attn_q"]?.int8Share == 0.2)  // 5 blocks of 128, a quarter rounded down
        #expect(try loaded.linear("blk.0.attn_q").permutation.layout.rotation == .int4)
        #expect(try loaded.linear("blk.0.attn_q").permutation.layout.int4Clip == 0.8)
        #expect(loaded.model["ropeBase"] == .number(100000.5) && loaded.model["dim"] == .int(576))
        #expect(loaded.kvCache.rotatesKeys && loaded.kvCache.bits == 4)
        // Nothing but the checkpoint is left in the parent folder.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["ckpt"])
    }

    /// The file follows the safetensors layout: u64 header length, JSON, 8-byte aligned data.
    @Test func tensorFileIsSafetensors() throws {
        let bytes = try SafeTensorsFile.encode([("a", Tensor([Float(1), 2, 3], shape: [3])), ("b", Tensor([Int8(-1)], shape: [1, 1]))], metadata: ["k": "v"])
        let length = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        #expect((8 + length) % 8 == 0)
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<8 + length])) as! [String: Any]
        let a = header["a"] as! [String: Any], b = header["b"] as! [String: Any]
        #expect(a["dtype"] as? String == "F32" && a["shape"] as? [Int] == [3] && a["data_offsets"] as? [Int] == [0, 12])
        #expect(b["dtype"] as? String == "I8" && b["data_offsets"] as? [Int] == [12, 13])
        #expect((header["__metadata__"] as? [String: String]) == ["k": "v"])
        let decoded = try SafeTensorsFile.decode(bytes, path: "x")
        #expect(try decoded.tensors["a"]!.values(as: Float.self) == [1, 2, 3] && decoded.metadata == ["k": "v"])
        #expect(throws: QuantError.self) { try decoded.tensors["a"]!.values(as: Int32.self) }
    }

    @Test func flippedDataByteIsAChecksumError() throws {
        try withWrittenCheckpoint { path in
            let file = "\(path)/model.safetensors"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
            bytes[bytes.count - 3] ^= 0x10  // inside the last tensor's data
            try bytes.write(to: URL(fileURLWithPath: file))
            expectLoadError(path) { if case .checksumMismatch = $0 { true } else { false } }
        }
    }

    @Test func truncatedTensorFileIsRefused() throws {
        try withWrittenCheckpoint { path in
            let file = URL(fileURLWithPath: "\(path)/model.safetensors")
            let bytes = try Data(contentsOf: file)
            try bytes.prefix(bytes.count - 100).write(to: file)
            expectLoadError(path) { if case .truncated = $0 { true } else { false } }
            try bytes.prefix(5).write(to: file)  // not even the header length
            expectLoadError(path) { if case .truncated = $0 { true } else { false } }
        }
    }

    @Test func badManifestJSONIsRefused() throws {
        try withWrittenCheckpoint { path in
            let file = URL(fileURLWithPath: "\(path)/manifest.json")
            let text = try String(contentsOf: file, encoding: .utf8)
            try String(text.dropLast(10)).write(to: file, atomically: false, encoding: .utf8)
            expectLoadError(path) { if case .badManifest = $0 { true } else { false } }
        }
    }

    @Test func wrongVersionIsRefused() throws {
        try withWrittenCheckpoint { path in
            for version in [1, CheckpointManifest.currentVersion + 1] {  // 1: before int4Clip
                try editManifest(path) { $0["formatVersion"] = version }
                expectLoadError(path) { $0 == .unsupportedVersion(path: "\(path)/manifest.json", found: version, supported: CheckpointManifest.readableVersions) }
            }
        }
    }

    /// Version 2 (before rotation) still loads: no `rotation` keys, every layout unrotated.
    @Test func version2LoadsUnrotated() throws {
        try withWrittenCheckpoint { path in
            try editManifest(path) { manifest in
                manifest["formatVersion"] = 2
                var layers = manifest["layers"] as! [String: Any]
                for (name, layer) in layers {
                    var record = layer as! [String: Any]
                    record["rotation"] = nil
                    layers[name] = record
                }
                manifest["layers"] = layers
                var calibration = manifest["calibration"] as! [String: Any]
                var recipe = calibration["recipe"] as! [String: Any]
                recipe["rotation"] = nil
                calibration["recipe"] = recipe
                manifest["calibration"] = calibration
            }
            let loaded = try QuantizedCheckpoint.load(from: path)
            for name in loaded.layers.keys { #expect(try loaded.linear(name).permutation.layout.rotation == BlockRotation.none, "\(name)") }
            #expect(loaded.calibration.recipe.rotation == BlockRotation.none)
        }
    }

    /// Version 3 (before key rotation) still loads: no `keyRotation`, keys unrotated.
    @Test func version3LoadsWithUnrotatedKeys() throws {
        try withWrittenCheckpoint { path in
            try editManifest(path) { manifest in
                manifest["formatVersion"] = 3
                var kv = manifest["kvCache"] as! [String: Any]
                kv["keyRotation"] = nil
                manifest["kvCache"] = kv
            }
            let loaded = try QuantizedCheckpoint.load(from: path)
            #expect(!loaded.kvCache.rotatesKeys)
        }
    }

    /// Key rotation is a KV4 setting: with an fp16 cache the manifest contradicts itself.
    @Test func keyRotationWithoutKV4IsRefused() throws {
        try withWrittenCheckpoint { path in
            try editManifest(path) { manifest in
                var kv = manifest["kvCache"] as! [String: Any]
                #expect(kv["keyRotation"] as? Bool == true)
                kv["bits"] = 16
                manifest["kvCache"] = kv
            }
            expectLoadError(path) { if case let .badManifest(_, reason) = $0 { reason.contains("keyRotation") } else { false } }
        }
    }

    @Test func shapeMismatchIsRefused() throws {
        // The manifest disagrees with the tensor file.
        try withWrittenCheckpoint { path in
            try editManifest(path) { manifest in
                var tensors = manifest["tensors"] as! [String: Any]
                var record = tensors["output_norm.weight"] as! [String: Any]
                record["shape"] = [575]
                tensors["output_norm.weight"] = record
                manifest["tensors"] = tensors
            }
            expectLoadError(path) { $0.isShapeMismatch(tensor: "output_norm.weight") }
        }
        // A layer's layout disagrees with its tensors (both files consistent otherwise).
        try withWrittenCheckpoint { path in
            try editManifest(path) { manifest in
                var layers = manifest["layers"] as! [String: Any]
                var layer = layers["blk.0.attn_q"] as! [String: Any]
                layer["outputs"] = 25
                layers["blk.0.attn_q"] = layer
                manifest["layers"] = layers
            }
            expectLoadError(path) { $0.isShapeMismatch(tensor: "blk.0.attn_q.weight") }
        }
    }

    @Test func missingFolderIsUnreadable() {
        expectLoadError("/nonexistent/comet-checkpoint") { if case .unreadable = $0 { true } else { false } }
    }

    /// Interrupting the write (here: the progress callback throws at the third tensor) leaves
    /// no target and no partial folder; interrupting a replacement leaves the old checkpoint.
    @Test func interruptedWriteLeavesNothingLoadable() throws {
        struct Interrupted: Error {}
        var (random, seed) = freshGenerator()
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("ckpt").path
        let checkpoint = try syntheticCheckpoint(using: &random)
        var calls = 0
        #expect(throws: Interrupted.self) {
            try checkpoint.write(to: path) { _ in
                calls += 1
                if calls == 3 { throw Interrupted() }
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty, "seed \(seed)")
        expectLoadError(path) { if case .unreadable = $0 { true } else { false } }

        try checkpoint.write(to: path)
        #expect(throws: CheckpointError.self) { try checkpoint.write(to: path) }  // exists, not replacing
        var changed = checkpoint
        try changed.addTensor("extra", Tensor([UInt8(1)], shape: [1]))
        calls = 0
        #expect(throws: Interrupted.self) {
            try changed.write(to: path, replacing: true) { _ in
                calls += 1
                if calls == 2 { throw Interrupted() }
            }
        }
        #expect(try QuantizedCheckpoint.load(from: path) == checkpoint)
        try changed.write(to: path, replacing: true)
        #expect(try QuantizedCheckpoint.load(from: path) == changed)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["ckpt"])
    }

    @Test func refusesInconsistentLayers() throws {
        var (random, _) = freshGenerator()
        var checkpoint = try syntheticCheckpoint(using: &random)
        let (w, _) = try checkpoint.linear("blk.0.attn_q")
        let other = try FMPQPermutation.identity(layout: FMPQLayout(inputChannels: 576, int8Blocks: 0))
        #expect(throws: QuantError.self) { try checkpoint.addLinear("x", weights: w, permutation: other) }
        #expect(throws: QuantError.self) { try checkpoint.addTensor("output_norm.weight", Tensor([Float(0)], shape: [1])) }
    }
}

@Suite struct TensorChecksumTests {
    @Test func knownVectors() {
        #expect(SHA256.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Lengths around the 55/56/64-byte padding edges agree with the system's sha256sum.
    @Test func agreesWithSha256sumAtBlockEdges() throws {
        var (random, seed) = freshGenerator()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/sha256sum") else { return }
        for length in [1, 55, 56, 57, 63, 64, 65, 119, 120, 128, Int.random(in: 129...5000, using: &random)] {
            let bytes = random.bytes(length)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
            let input = Pipe(), output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            input.fileHandleForWriting.write(Data(bytes))
            try input.fileHandleForWriting.close()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(SHA256.hex(bytes) == String(text.prefix(64)), "seed \(seed) length \(length)")
        }
    }
}

// MARK: Helpers

extension CheckpointError {
    func isShapeMismatch(tensor expected: String) -> Bool {
        if case let .shapeMismatch(tensor, _) = self { return tensor == expected }
        return false
    }
}

/// Writes a fresh synthetic checkpoint, hands its path to `body`, removes it.
func withWrittenCheckpoint(_ body: (String) throws -> Void) throws {
    var (random, _) = freshGenerator()
    let folder = try temporaryFolder()
    defer { try? FileManager.default.removeItem(at: folder) }
    let path = folder.appendingPathComponent("ckpt").path
    try syntheticCheckpoint(using: &random).write(to: path)
    try body(path)
}

/// Loading `path` must fail with a `CheckpointError` that `matches`.
func expectLoadError(_ path: String, sourceLocation: SourceLocation = #_sourceLocation, _ matches: (CheckpointError) -> Bool) {
    do {
        _ = try QuantizedCheckpoint.load(from: path)
        Issue.record("loaded a checkpoint that should be refused", sourceLocation: sourceLocation)
    } catch {
        #expect(matches(error), "wrong error: \(error)", sourceLocation: sourceLocation)
    }
}

func editManifest(_ path: String, _ edit: (inout [String: Any]) -> Void) throws {
    let file = URL(fileURLWithPath: "\(path)/manifest.json")
    var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as! [String: Any]
    edit(&manifest)
    try JSONSerialization.data(withJSONObject: manifest).write(to: file)
}
