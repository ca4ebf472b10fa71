import FoundationEssentials
import Glibc

/// A quantized model on disk: a folder holding `model.safetensors` (every tensor) and
/// `manifest.json` (a `CheckpointManifest`: format version, model config, tokenizer, the FMPQ
/// layout of every linear layer, calibration settings, a SHA-256 per tensor).
///
///     var checkpoint = QuantizedCheckpoint(model: config, tokenizer: tokenizer, calibration: settings)
///     try checkpoint.addLinear("blk.0.attn_q", weights: q, permutation: p)
///     try checkpoint.addTensor("token_embd.weight", embeddings)
///     try checkpoint.write(to: "smollm2-fmpq")           // atomic
///     let loaded = try QuantizedCheckpoint.load(from: "smollm2-fmpq")   // checked
///
/// Writing is atomic: everything goes into a hidden folder beside the target, is fsynced, and
/// only then renamed to the target, so an interrupted `quantize` leaves either nothing or the
/// previous checkpoint there. Loading refuses, with one `CheckpointError`, any folder whose
/// version, tensors, shapes, dtypes or checksums disagree with its manifest.
public struct QuantizedCheckpoint: Sendable, Equatable {
    public static let tensorFile = "model.safetensors"
    public static let manifestFile = "manifest.json"

    public var model: JSONValue
    public var tokenizer: CheckpointManifest.TokenizerReference
    public var calibration: CheckpointManifest.CalibrationSettings
    public var kvCache: CheckpointManifest.KVCacheSettings
    /// The quantized linear layers by name.
    public private(set) var layers: [String: CheckpointManifest.LayerPrecision] = [:]
    /// Every tensor by name: the layers' and any other (embeddings, norms, smoothing factors).
    public private(set) var tensors: [String: Tensor] = [:]

    public init(
        model: JSONValue, tokenizer: CheckpointManifest.TokenizerReference,
        calibration: CheckpointManifest.CalibrationSettings, kvCache: CheckpointManifest.KVCacheSettings = .init()
    ) {
        self.model = model
        self.tokenizer = tokenizer
        self.calibration = calibration
        self.kvCache = kvCache
    }

    /// Adds a tensor that is not part of a quantized linear layer.
    public mutating func addTensor(_ name: String, _ tensor: Tensor) throws {
        guard tensors[name] == nil, name != "__metadata__" else { throw QuantError.shapeMismatch("tensor \(name) is already in the checkpoint") }
        tensors[name] = tensor
    }

    /// Adds a quantized linear layer: its INT4 weights (input columns already permuted) and its
    /// permutation, as tensors "\(name).weight" (U8), "\(name).scales" (F16) and "\(name).perm" (I32).
    public mutating func addLinear(_ name: String, weights: Int4Weights, permutation: FMPQPermutation) throws {
        guard weights.layout == permutation.layout else {
            throw QuantError.shapeMismatch("layer \(name): weight layout \(weights.layout) differs from permutation layout \(permutation.layout)")
        }
        guard layers[name] == nil else { throw QuantError.shapeMismatch("layer \(name) is already in the checkpoint") }
        let layout = weights.layout
        let record = CheckpointManifest.LayerPrecision(
            inputChannels: layout.inputChannels, outputs: weights.outputs, blockSize: layout.blockSize,
            int8Blocks: layout.int8Blocks, int8Share: layout.int8Share, int4Clip: layout.int4Clip,
            rotation: layout.rotation, weights: "\(name).weight", scales: "\(name).scales", permutation: "\(name).perm"
        )
        try addTensor(record.weights, Tensor(weights.codes, shape: [weights.outputs, layout.paddedChannels / 2]))
        try addTensor(record.scales, Tensor(weights.scales, shape: [weights.outputs, layout.blockCount]))
        try addTensor(record.permutation, Tensor(permutation.permutation, shape: [layout.inputChannels]))
        layers[name] = record
    }

    /// The weights and permutation of linear layer `name`.
    public func linear(_ name: String) throws -> (weights: Int4Weights, permutation: FMPQPermutation) {
        guard let record = layers[name] else { throw QuantError.shapeMismatch("no linear layer \(name) in the checkpoint") }
        let layout = try record.layout()
        guard let codes = tensors[record.weights], let scales = tensors[record.scales], let permutation = tensors[record.permutation] else {
            throw QuantError.shapeMismatch("layer \(name) is missing a tensor")
        }
        let weights = try Int4Weights(layout: layout, outputs: record.outputs, codes: codes.values(as: UInt8.self), scales: scales.values(as: Float16.self))
        return (weights, try FMPQPermutation(layout: layout, permutation: permutation.values(as: Int32.self)))
    }

    /// The manifest of this checkpoint as it would be written (checksums computed now).
    public func manifest() -> CheckpointManifest {
        CheckpointManifest(
            format: CheckpointManifest.formatName, formatVersion: CheckpointManifest.currentVersion, model: model,
            tokenizer: tokenizer, packing: CheckpointManifest.currentPacking, calibration: calibration, kvCache: kvCache,
            layers: layers,
            tensors: tensors.mapValues { .init(dtype: $0.dtype, shape: $0.shape, sha256: SHA256.hex($0.bytes)) }
        )
    }

    // MARK: Writing

    /// Writes the checkpoint to the folder `path`, atomically. `progress` is called with each
    /// tensor's name before it is written; throwing from it aborts the write (the error is
    /// rethrown) and leaves `path` as it was. An existing checkpoint at `path` is replaced
    /// only when `replacing` is true.
    public func write(to path: String, replacing: Bool = false, progress: (String) throws -> Void = { _ in }) throws {
        let (parent, name) = CheckpointFiles.split(path)
        if CheckpointFiles.exists(path) && !replacing {
            throw CheckpointError.writeFailed(path: path, reason: "it exists (pass replacing: true to overwrite)")
        }
        // A hidden folder beside the target: same file system, so the final rename is atomic.
        let partial = "\(parent)/.\(name).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try CheckpointFiles.makeDirectory(partial)
        do {
            let names = tensors.keys.sorted()
            let ordered = names.map { (name: $0, tensor: tensors[$0]!) }
            let header = try SafeTensorsFile.header(for: ordered, metadata: ["format": CheckpointManifest.formatName])
            try CheckpointFiles.write("\(partial)/\(Self.tensorFile)", chunks: [header] + ordered.map(\.tensor.bytes)) { i in
                if i > 0 { try progress(names[i - 1]) }
            }
            // The manifest last: a folder without one never loads.
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let manifest = [UInt8](try encoder.encode(manifest()))
            try CheckpointFiles.write("\(partial)/\(Self.manifestFile)", chunks: [manifest]) { _ in }
            try CheckpointFiles.syncDirectory(partial)
            // Publish: move any old checkpoint aside, rename, then delete the old one.
            if CheckpointFiles.exists(path) {
                let old = "\(parent)/.\(name).old-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
                try CheckpointFiles.rename(path, old)
                do {
                    try CheckpointFiles.rename(partial, path)
                } catch {
                    try? CheckpointFiles.rename(old, path)
                    throw error
                }
                CheckpointFiles.removeTree(old)
            } else {
                try CheckpointFiles.rename(partial, path)
            }
            try CheckpointFiles.syncDirectory(parent)
        } catch {
            CheckpointFiles.removeTree(partial)
            throw error
        }
    }

    // MARK: Loading

    /// Loads and checks the checkpoint in folder `path`: format and version first, then the
    /// tensor file's structure, then each tensor's dtype, shape and SHA-256 against the
    /// manifest, then each layer's tensors against its layout. Throws `CheckpointError`.
    public static func load(from path: String) throws(CheckpointError) -> QuantizedCheckpoint {
        let manifestPath = "\(path)/\(manifestFile)"
        let manifestBytes = try CheckpointFiles.read(manifestPath)
        let manifest = try decodeManifest(manifestBytes, path: manifestPath)

        let tensorPath = "\(path)/\(tensorFile)"
        let (tensors, _) = try SafeTensorsFile.decode(try CheckpointFiles.read(tensorPath), path: tensorPath)
        for name in Set(tensors.keys).union(manifest.tensors.keys).sorted() {
            guard let record = manifest.tensors[name] else { throw .shapeMismatch(tensor: name, reason: "in \(tensorFile) but not in the manifest") }
            guard let tensor = tensors[name] else { throw .shapeMismatch(tensor: name, reason: "in the manifest but not in \(tensorFile)") }
            guard tensor.dtype == record.dtype, tensor.shape == record.shape else {
                throw .shapeMismatch(tensor: name, reason: "\(tensor.dtype.rawValue) \(tensor.shape) in \(tensorFile), manifest says \(record.dtype.rawValue) \(record.shape)")
            }
            let found = SHA256.hex(tensor.bytes)
            guard found == record.sha256 else { throw .checksumMismatch(tensor: name, expected: record.sha256, found: found) }
        }

        var checkpoint = QuantizedCheckpoint(model: manifest.model, tokenizer: manifest.tokenizer, calibration: manifest.calibration, kvCache: manifest.kvCache)
        checkpoint.tensors = tensors
        checkpoint.layers = manifest.layers
        for (name, record) in manifest.layers.sorted(by: { $0.key < $1.key }) {
            try checkLayer(name, record, tensors: tensors)
        }
        try checkKeySmoothing(manifest.kvCache, tensors: tensors, path: manifestPath)
        if manifest.kvCache.rotatesKeys, manifest.kvCache.bits != 4 {
            throw .badManifest(path: manifestPath, reason: "kvCache.keyRotation is for a KV4 cache, and bits is \(manifest.kvCache.bits)")
        }
        return checkpoint
    }

    /// Format and version before anything else, so an old or foreign file gets the error that
    /// says so rather than a field-by-field complaint.
    private static func decodeManifest(_ bytes: [UInt8], path: String) throws(CheckpointError) -> CheckpointManifest {
        struct Probe: Decodable { var format: String; var formatVersion: Int }
        let probe: Probe
        do {
            probe = try JSONDecoder().decode(Probe.self, from: Data(bytes))
        } catch {
            throw .badManifest(path: path, reason: "not a checkpoint manifest (\(error))")
        }
        guard probe.format == CheckpointManifest.formatName else {
            throw .badManifest(path: path, reason: "format is \"\(probe.format)\", not \"\(CheckpointManifest.formatName)\"")
        }
        guard CheckpointManifest.readableVersions.contains(probe.formatVersion) else {
            throw .unsupportedVersion(path: path, found: probe.formatVersion, supported: CheckpointManifest.readableVersions)
        }
        let manifest: CheckpointManifest
        do {
            manifest = try JSONDecoder().decode(CheckpointManifest.self, from: Data(bytes))
        } catch {
            throw .badManifest(path: path, reason: "\(error)")
        }
        guard manifest.packing == CheckpointManifest.currentPacking else {
            throw .badManifest(path: path, reason: "packing \"\(manifest.packing)\" is not \"\(CheckpointManifest.currentPacking)\"")
        }
        return manifest
    }

    /// K smoothing is all or nothing: the flag, the alpha and one positive F32 vector per layer
    /// agree, or the checkpoint is refused (folded weights with unknown factors cannot be checked,
    /// and factors without the flag mean the writer and the manifest disagree).
    private static func checkKeySmoothing(_ kv: CheckpointManifest.KVCacheSettings, tensors: [String: Tensor], path: String) throws(CheckpointError) {
        guard kv.keySmoothing else {
            guard kv.keySmoothingAlpha == nil, kv.keySmoothingFactors == nil else {
                throw .badManifest(path: path, reason: "kvCache has K smoothing factors or alpha but keySmoothing is false")
            }
            return
        }
        guard let alpha = kv.keySmoothingAlpha, alpha.isFinite, (0...1).contains(alpha) else {
            throw .badManifest(path: path, reason: "kvCache.keySmoothing is true but keySmoothingAlpha is missing or outside 0...1")
        }
        guard let names = kv.keySmoothingFactors, !names.isEmpty else {
            throw .badManifest(path: path, reason: "kvCache.keySmoothing is true but keySmoothingFactors names no tensors")
        }
        for name in names {
            guard let tensor = tensors[name] else { throw .shapeMismatch(tensor: name, reason: "K smoothing factors named by the manifest are missing") }
            guard tensor.dtype == .f32, tensor.shape.count == 1, tensor.elementCount > 0, tensor.shape == tensors[names[0]]!.shape else {
                throw .shapeMismatch(tensor: name, reason: "K smoothing factors must be F32 [kvHeads * headDim] like every layer's, found \(tensor.dtype.rawValue) \(tensor.shape)")
            }
            guard (try? tensor.values(as: Float.self))?.allSatisfy({ $0.isFinite && $0 > 0 }) == true else {
                throw .shapeMismatch(tensor: name, reason: "K smoothing factors must be finite and positive")
            }
        }
    }

    /// A layer's tensors must have the shapes its layout implies, and its permutation must be a
    /// bijection: what the kernels will assume without checking.
    private static func checkLayer(_ name: String, _ record: CheckpointManifest.LayerPrecision, tensors: [String: Tensor]) throws(CheckpointError) {
        let layout: FMPQLayout
        do {
            layout = try record.layout()
        } catch {
            throw .shapeMismatch(tensor: name, reason: "\(error)")
        }
        guard record.outputs > 0, record.int8Share == layout.int8Share else {
            throw .shapeMismatch(tensor: name, reason: "\(record.outputs) outputs, INT8 share \(record.int8Share) for layout \(layout)")
        }
        let expected: [(String, TensorDType, [Int])] = [
            (record.weights, .u8, [record.outputs, layout.paddedChannels / 2]),
            (record.scales, .f16, [record.outputs, layout.blockCount]),
            (record.permutation, .i32, [layout.inputChannels]),
        ]
        for (tensorName, dtype, shape) in expected {
            guard let tensor = tensors[tensorName] else { throw .shapeMismatch(tensor: tensorName, reason: "layer \(name) needs it") }
            guard tensor.dtype == dtype, tensor.shape == shape else {
                throw .shapeMismatch(tensor: tensorName, reason: "layer \(name) needs \(dtype.rawValue) \(shape), found \(tensor.dtype.rawValue) \(tensor.shape)")
            }
        }
        do {
            _ = try FMPQPermutation(layout: layout, permutation: tensors[record.permutation]!.values(as: Int32.self))
        } catch {
            throw .shapeMismatch(tensor: record.permutation, reason: "\(error)")
        }
    }
}
