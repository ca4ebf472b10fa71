import CPUReference
import Foundation
import Quant

/// A tiny llama/mistral/qwen2 model written by the tests as a Hugging Face folder (config.json plus
/// safetensors, optionally sharded with an index), with seeded weights and a naive reference forward.
///
/// Weights are k/256 with |k| <= 128 and norms 1 + k/128 with |k| <= 16: exactly representable in F32,
/// F16 and BF16, so a model stored in any of the three dtypes has bit-identical fp32 weights.
struct TinyHFModel {
    var modelType = "llama"
    var vocab = 40, dim = 32, layers = 2, heads = 4, kvHeads = 2, headDim = 8, ffn = 48
    var ropeTheta = 10_000.0
    var eps = 1e-5
    var tied = false
    /// q/k/v biases (qwen2 always has them).
    var bias: Bool { modelType == "qwen2" }
    /// Extra config.json fields (sliding_window, rope_scaling, ...), and fields to remove (value NSNull).
    var extraConfig: [String: Any] = [:]
    /// name -> (row-major shape, values)
    private(set) var weights: [String: (shape: [Int], values: [Float])] = [:]

    init(modelType: String = "llama", tied: Bool = false, seed: UInt64 = 1) {
        self.modelType = modelType
        self.tied = tied
        var random = SplitMix64(seed: seed)
        /// A seeded integer in -128...128.
        func next() -> Int { Int(random.next() % 257) - 128 }
        func matrix(_ rows: Int, _ cols: Int) -> (shape: [Int], values: [Float]) {
            ([rows, cols], (0..<(rows * cols)).map { _ in Float(next()) / 256 })
        }
        func vector(_ n: Int) -> (shape: [Int], values: [Float]) { ([n], (0..<n).map { _ in Float(next()) / 256 }) }
        func norm(_ n: Int) -> (shape: [Int], values: [Float]) { ([n], (0..<n).map { _ in 1 + Float(next() / 8) / 128 }) }
        let qDim = heads * headDim, kvDim = kvHeads * headDim
        weights["model.embed_tokens.weight"] = matrix(vocab, dim)
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            weights[p + "input_layernorm.weight"] = norm(dim)
            weights[p + "self_attn.q_proj.weight"] = matrix(qDim, dim)
            weights[p + "self_attn.k_proj.weight"] = matrix(kvDim, dim)
            weights[p + "self_attn.v_proj.weight"] = matrix(kvDim, dim)
            if modelType == "qwen2" {
                weights[p + "self_attn.q_proj.bias"] = vector(qDim)
                weights[p + "self_attn.k_proj.bias"] = vector(kvDim)
                weights[p + "self_attn.v_proj.bias"] = vector(kvDim)
            }
            weights[p + "self_attn.o_proj.weight"] = matrix(dim, qDim)
            weights[p + "post_attention_layernorm.weight"] = norm(dim)
            weights[p + "mlp.gate_proj.weight"] = matrix(ffn, dim)
            weights[p + "mlp.up_proj.weight"] = matrix(ffn, dim)
            weights[p + "mlp.down_proj.weight"] = matrix(dim, ffn)
        }
        weights["model.norm.weight"] = norm(dim)
        if !tied { weights["lm_head.weight"] = matrix(vocab, dim) }
    }

    var config: [String: Any] {
        var c: [String: Any] = [
            "architectures": [["llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"][modelType] ?? "X"],
            "model_type": modelType, "vocab_size": vocab, "hidden_size": dim, "intermediate_size": ffn,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kvHeads,
            "hidden_act": "silu", "max_position_embeddings": 64, "rms_norm_eps": eps, "rope_theta": ropeTheta,
            "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
        ]
        for (key, value) in extraConfig {
            if value is NSNull { c[key] = nil } else { c[key] = value }
        }
        return c
    }

    /// Replaces (or with nil removes) one weight.
    mutating func setWeight(_ name: String, _ value: (shape: [Int], values: [Float])?) { weights[name] = value }

    /// Writes the folder: `shards` safetensors files (an index when more than one), each tensor in
    /// `dtype(name)`. Returns the folder's path; the caller removes it.
    @discardableResult
    func write(to folder: String, shards: Int = 1, dtype: (String) -> TensorDType = { _ in .f32 }) throws -> String {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys])
            .write(to: URL(fileURLWithPath: folder + "/config.json"))
        let names = weights.keys.sorted()
        var weightMap: [String: String] = [:]
        for shard in 0..<shards {
            let fileName = shards == 1 ? "model.safetensors" : "model-0000\(shard + 1)-of-0000\(shards).safetensors"
            let mine = names.enumerated().filter { $0.offset % shards == shard }.map(\.element)
            let tensors = try mine.map { name -> (name: String, tensor: Tensor) in
                let (shape, values) = weights[name]!
                switch dtype(name) {
                case .f16: return (name, try Tensor(values.map { Float16($0) }, shape: shape))
                case .bf16: return (name, try Tensor(values.map { BFloat16($0) }, shape: shape))
                default: return (name, try Tensor(values, shape: shape))
                }
            }
            let bytes = try SafeTensorsFile.encode(tensors)
            try Data(bytes).write(to: URL(fileURLWithPath: folder + "/" + fileName))
            for name in mine { weightMap[name] = fileName }
        }
        if shards > 1 {
            let index: [String: Any] = ["metadata": ["total_size": 0], "weight_map": weightMap]
            try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: folder + "/model.safetensors.index.json"))
        }
        return folder
    }

    /// Logits [tokens][vocab] of a straightforward Double-precision forward pass written from the
    /// Hugging Face modeling code, independent of the CPU backend: RMSNorm, q/k/v (+ bias), rotate-half
    /// RoPE (channel i pairs with i + headDim/2), causal GQA softmax attention, SwiGLU, tied or untied head.
    func referenceLogits(_ tokens: [Int], inverseFrequencies: [Double]? = nil) -> [[Double]] {
        func w(_ name: String) -> [Double] { weights[name]!.values.map(Double.init) }
        func matvec(_ m: [Double], _ x: [Double], rows: Int) -> [Double] {
            let cols = x.count
            return (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + m[r * cols + $1] * x[$1] } }
        }
        func rmsNorm(_ x: [Double], _ weight: [Double]) -> [Double] {
            let scale = 1 / (x.reduce(0) { $0 + $1 * $1 } / Double(x.count) + eps).squareRoot()
            return zip(x, weight).map { $0 * scale * $1 }
        }
        let half = headDim / 2
        let inv = inverseFrequencies ?? (0..<half).map { 1 / pow(ropeTheta, Double(2 * $0) / Double(headDim)) }
        func rope(_ x: inout [Double], heads n: Int, position: Int) {
            for h in 0..<n {
                for i in 0..<half {
                    let a = h * headDim + i, b = a + half
                    let angle = Double(position) * inv[i]
                    let (x0, x1) = (x[a], x[b])
                    x[a] = x0 * cos(angle) - x1 * sin(angle)
                    x[b] = x1 * cos(angle) + x0 * sin(angle)
                }
            }
        }
        let embed = w("model.embed_tokens.weight")
        var hidden = tokens.map { Array(embed[($0 * dim)..<(($0 + 1) * dim)]) }
        let qDim = heads * headDim, kvDim = kvHeads * headDim
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            var keys: [[Double]] = [], values: [[Double]] = []
            var queries: [[Double]] = []
            for (t, x) in hidden.enumerated() {
                let xn = rmsNorm(x, w(p + "input_layernorm.weight"))
                var q = matvec(w(p + "self_attn.q_proj.weight"), xn, rows: qDim)
                var k = matvec(w(p + "self_attn.k_proj.weight"), xn, rows: kvDim)
                var v = matvec(w(p + "self_attn.v_proj.weight"), xn, rows: kvDim)
                if bias {
                    q = zip(q, w(p + "self_attn.q_proj.bias")).map(+)
                    k = zip(k, w(p + "self_attn.k_proj.bias")).map(+)
                    v = zip(v, w(p + "self_attn.v_proj.bias")).map(+)
                }
                rope(&q, heads: heads, position: t)
                rope(&k, heads: kvHeads, position: t)
                queries.append(q); keys.append(k); values.append(v)
            }
            for t in 0..<hidden.count {
                var attention = [Double](repeating: 0, count: qDim)
                for h in 0..<heads {
                    let g = h / (heads / kvHeads)
                    let scores = (0...t).map { j in
                        (0..<headDim).reduce(0.0) { $0 + queries[t][h * headDim + $1] * keys[j][g * headDim + $1] } / Double(headDim).squareRoot()
                    }
                    let top = scores.max()!
                    let e = scores.map { exp($0 - top) }
                    let sum = e.reduce(0, +)
                    for j in 0...t {
                        for c in 0..<headDim { attention[h * headDim + c] += e[j] / sum * values[j][g * headDim + c] }
                    }
                }
                hidden[t] = zip(hidden[t], matvec(w(p + "self_attn.o_proj.weight"), attention, rows: dim)).map(+)
                let xn = rmsNorm(hidden[t], w(p + "post_attention_layernorm.weight"))
                let gate = matvec(w(p + "mlp.gate_proj.weight"), xn, rows: ffn)
                let up = matvec(w(p + "mlp.up_proj.weight"), xn, rows: ffn)
                let act = zip(gate, up).map { $0 / (1 + exp(-$0)) * $1 }
                hidden[t] = zip(hidden[t], matvec(w(p + "mlp.down_proj.weight"), act, rows: dim)).map(+)
            }
        }
        let head = tied ? embed : w("lm_head.weight")
        return hidden.map { matvec(head, rmsNorm($0, w("model.norm.weight")), rows: vocab) }
    }
}

/// A fresh temporary folder path (not created); the caller removes it.
func temporaryFolder(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("comet-\(UUID().uuidString)-\(name)").path
}
