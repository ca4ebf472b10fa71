/// manifest.json of a `QuantizedCheckpoint`: everything needed to use model.safetensors beside
/// it, and to know how it was made. Plain data; `QuantizedCheckpoint` builds and checks it.
public struct CheckpointManifest: Sendable, Equatable, Codable {
    /// The `format` string of every comet checkpoint.
    public static let formatName = "comet-fmpq-checkpoint"
    /// The version this build writes and reads. Bump it whenever a reader of the old version
    /// would misread the new files. 2: layers carry `int4Clip` (a version-1 reader would quantize
    /// their A4 blocks unclipped). 3: layers may rotate blocks (`rotation`; a version-2 reader
    /// would quantize them unrotated). 4: the KV cache may rotate keys (`keyRotation`; a
    /// version-3 reader would run the checkpoint with plain keys, a KV4 it was not evaluated
    /// with). Versions 2 and 3 still load: no rotation of the missing kind.
    public static let currentVersion = 4
    /// The versions this build reads.
    public static let readableVersions = 2...4
    /// The packing every tensor follows, as `Int4Weights`, `QuantizedActivations` and
    /// `KV4` define it (INT4 two per byte, low nibble first; fp16 scales per (row,
    /// 64/128-block); INT8 blocks last in K; permutation[p] = original channel at position p).
    public static let currentPacking = "comet-w4ax-v1"

    public var format: String
    public var formatVersion: Int
    /// The model config, as the Model module encodes it (opaque here).
    public var model: JSONValue
    public var tokenizer: TokenizerReference
    public var packing: String
    public var calibration: CalibrationSettings
    public var kvCache: KVCacheSettings
    /// Per quantized linear layer (e.g. "blk.3.ffn_down"): its layout and tensors.
    public var layers: [String: LayerPrecision]
    /// Every tensor in model.safetensors: dtype, shape and SHA-256.
    public var tensors: [String: TensorRecord]

    /// Where the tokenizer comes from (the checkpoint does not copy it).
    public struct TokenizerReference: Sendable, Equatable, Codable {
        /// "gguf" (BPE in the model file's metadata) or "sentencepiece".
        public var kind: String
        /// The file it was read from, as given to `quantize`.
        public var source: String
        /// SHA-256 of that file, to refuse a different one; nil if not recorded.
        public var sha256: String?

        public init(kind: String, source: String, sha256: String? = nil) {
            self.kind = kind
            self.source = source
            self.sha256 = sha256
        }
    }

    /// How calibration and weight quantization were run: the settings the accuracy table reports.
    public struct CalibrationSettings: Sendable, Equatable, Codable {
        /// The calibration text, e.g. "web: Genesis-Malachi".
        public var text: String
        /// Calibration tokens seen by every layer.
        public var tokens: Int
        /// Tokens per calibration sequence.
        public var contextLength: Int
        /// Whether position 0 (the attention sink) was kept out of the outlier statistics.
        public var excludesSink: Bool
        /// The FMPQ choices applied to every linear layer.
        public var recipe: FMPQRecipe
        /// INT8 budgets that replace the recipe's for one kind of linear in every layer, by kind
        /// ("qkv", "o", "gate_up", "down"); absent when every linear has the recipe's. Recorded
        /// to show what was done: each layer's own `int8Blocks` is what a reader runs.
        public var linearBudgets: [String: INT8Budget]?

        public init(
            text: String, tokens: Int, contextLength: Int, excludesSink: Bool = true, recipe: FMPQRecipe = FMPQRecipe(),
            linearBudgets: [String: INT8Budget]? = nil
        ) {
            self.text = text
            self.tokens = tokens
            self.contextLength = contextLength
            self.excludesSink = excludesSink
            self.recipe = recipe
            self.linearBudgets = linearBudgets
        }
    }

    /// The KV cache format the checkpoint was calibrated for.
    public struct KVCacheSettings: Sendable, Equatable, Codable {
        /// 4 (KV4, the `KV4` format) or 16 (fp16 cache).
        public var bits: Int
        /// Whether per-channel K smoothing (from calibration, `KeySmoothing`) is folded into the
        /// q/k rows of the qkv weights. The folded weights are all a reader needs; the factors
        /// are kept to show what was done and to check it.
        public var keySmoothing: Bool
        /// The exponent the factors were chosen with (s = pair abs-max^alpha); nil without smoothing.
        public var keySmoothingAlpha: Double?
        /// F32 [kvHeads * headDim] per transformer layer, in layer order: the names of the
        /// `KeySmoothing.factors` tensors. Present exactly when `keySmoothing` is.
        public var keySmoothingFactors: [String]?
        /// Whether each (token, KV head) key is Hadamard rotated after RoPE before KV4 quantizes
        /// it: the cache holds H·k, and the queries become H·q / headDim (H the headDim x headDim
        /// Sylvester matrix, `BlockHadamard`), so q·k is unchanged while K's outlier channels
        /// are spread over the whole head before its one (scale, zero) is taken. KV4 only;
        /// absent before version 4 (false).
        public var keyRotation: Bool?

        public init(bits: Int = 4, keySmoothing: Bool = false, keySmoothingAlpha: Double? = nil, keySmoothingFactors: [String]? = nil,
                    keyRotation: Bool = false) {
            self.bits = bits
            self.keySmoothing = keySmoothing
            self.keySmoothingAlpha = keySmoothingAlpha
            self.keySmoothingFactors = keySmoothingFactors
            self.keyRotation = keyRotation ? true : nil
        }

        /// `keyRotation`, absent read as false.
        public var rotatesKeys: Bool { keyRotation ?? false }
    }

    /// One quantized linear layer: its FMPQ layout and the names of its tensors.
    public struct LayerPrecision: Sendable, Equatable, Codable {
        /// K before padding.
        public var inputChannels: Int
        /// N.
        public var outputs: Int
        public var blockSize: Int
        public var int8Blocks: Int
        /// int8Blocks / blocks, for reading (the loader checks it agrees).
        public var int8Share: Double
        /// `FMPQLayout.int4Clip`: the A4 blocks' scale clip ratio, applied at run time.
        public var int4Clip: Float
        /// `FMPQLayout.rotation`: which blocks are Hadamard rotated (absent before version 3: none).
        public var rotation: BlockRotation?
        /// U8 [outputs, paddedChannels / 2]: `Int4Weights.codes`.
        public var weights: String
        /// F16 [outputs, blocks]: `Int4Weights.scales`.
        public var scales: String
        /// I32 [inputChannels]: `FMPQPermutation.permutation`.
        public var permutation: String

        /// The layout this record describes (throws on an impossible one).
        public func layout() throws -> FMPQLayout {
            try FMPQLayout(inputChannels: inputChannels, blockSize: blockSize, int8Blocks: int8Blocks, int4Clip: int4Clip,
                           rotation: rotation ?? .none)
        }
    }

    public struct TensorRecord: Sendable, Equatable, Codable {
        public var dtype: TensorDType
        public var shape: [Int]
        public var sha256: String
    }
}
