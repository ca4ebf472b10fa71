import ArgumentParser
import Benchmarks
import CUDA
import FoundationEssentials
import Kernels
import Model

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: our figure and the baseline's from the same run, and their ratio (GPU kernels, decode steps, the serving engine, an HTTP server).",
        subcommands: [Copy.self, Gemm.self, Attention.self, PrefillAttention.self, Sampling.self, Decode.self, Throughput.self, ServeLoad.self])

    /// Runs a benchmark that prints its own table, writes its result as JSON when asked, and
    /// turns any error into one `error:` line and exit status 1.
    static func report<Result: Encodable>(json: String?, _ body: () throws -> Result) throws {
        do {
            let result = try body()
            if let json { try writeJSON(result, to: json) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail("\(error)")
        }
    }

    /// Writes a benchmark's result as pretty JSON with sorted keys.
    static func writeJSON(_ result: some Encodable, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(result).write(to: URL(filePath: path))
    }

    struct Copy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Device-to-device copy bandwidth: comet's kernel against cuMemcpyDtoD.")

        @Option(help: "Bytes per copy, in MiB.")
        var mib = 2048

        @Option(help: "Timed iterations (the median is reported).")
        var iterations = 30

        @Option(help: "Also write the result as JSON to this file.")
        var json: String?

        @OptionGroup var gpu: GPUOptions

        func validate() throws {
            guard mib > 0, mib <= 1 << 20 else { throw ValidationError("--mib must be between 1 and 1048576") }
            guard iterations > 0 else { throw ValidationError("--iterations must be positive") }
        }

        func run() throws {
            try Bench.report(json: json) {
                let result = try CopyBenchmark(library: gpu.makeLibrary(), bytes: mib << 20, iterations: iterations).run()
                print(CopyBenchmark.table(result))
                return result
            }
        }
    }

    struct Gemm: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "W4Ax GEMM against cuBLASLt bf16 and FP8 on Llama-3-8B and -70B linear shapes.")

        @Option(help: "Comma-separated token counts M.")
        var m = "1,16,64,256,1024,4096,8192"

        @Option(help: "Which shapes: 8b, 70b or all.")
        var models = "all"

        @Option(help: "Comma-separated layers to run (qkv, o, gate_up, down); default all.")
        var layers: String?

        @Option(help: "Fraction of K-blocks in INT8.")
        var int8Share = 0.16

        @Flag(help: "Time ours only (no cuBLASLt).")
        var noBaseline = false

        @Option(help: "W4Ax kernel: auto (what the runner picks for each M), small-m (mma.sync, packed activations) or large-m (wgmma, tiled activations, split-K; sm_90a).")
        var kernel = "auto"

        @Option(name: .customLong("small-m-n-tiles"), help: "Small-M kernel: n-tiles of 16 outputs per block, 1 or 2 (default: by N).")
        var smallMNTiles: Int?

        @Option(help: "Small-M kernel: warps per block, 8 or 4 (4 up to M = 8 only; default 8).")
        var smallMWarps: Int?

        @Option(help: "Also write the rows as JSON to this file.")
        var json: String?

        @OptionGroup var gpu: GPUOptions

        var tokenCounts: [Int] { m.split(separator: ",").compactMap { Int($0.filter { $0 != " " }) } }

        func validate() throws {
            guard !tokenCounts.isEmpty, tokenCounts.allSatisfy({ $0 > 0 && $0 <= 65536 }),
                  tokenCounts.count == m.split(separator: ",").count
            else { throw ValidationError("--m takes positive token counts up to 65536, e.g. 1,16,1024") }
            guard ["8b", "70b", "all"].contains(models) else { throw ValidationError("--models is 8b, 70b or all") }
            guard (0...1).contains(int8Share) else { throw ValidationError("--int8-share is between 0 and 1") }
            guard GemmBenchmark.Kernel(rawValue: kernel) != nil else { throw ValidationError("--kernel is auto, small-m or large-m") }
            do { _ = try W4AxGemm.SmallMTuning(nTiles: smallMNTiles, warps: smallMWarps) } catch {
                throw ValidationError("--small-m-n-tiles is 1 or 2, --small-m-warps 4 or 8")
            }
            if let layers, !layers.split(separator: ",").allSatisfy({ ["qkv", "o", "gate_up", "down"].contains(String($0)) }) {
                throw ValidationError("--layers takes qkv, o, gate_up and down")
            }
        }

        func run() throws {
            try Bench.report(json: json) {
                // Kernels launched one after another, as cuBLASLt's are: back-to-back dependent
                // launches of one GEMM would overlap each call's start with the last one's end.
                let library = try gpu.makeLibrary(dependentLaunch: false)
                let cublas = noBaseline ? nil : try CuBLASLt.load(search: gpu.librarySearch)
                let bench = GemmBenchmark(
                    library: library, cublas: cublas, int8Share: int8Share, kernel: GemmBenchmark.Kernel(rawValue: kernel)!,
                    smallM: try W4AxGemm.SmallMTuning(nTiles: smallMNTiles, warps: smallMWarps))
                let wanted = layers.map { Set($0.split(separator: ",").map(String.init)) }
                let shapes = GemmBenchmark.llama3Shapes.filter {
                    (models == "all" || $0.model.hasSuffix("-" + models)) && (wanted?.contains($0.layer) ?? true)
                }
                var rows: [GemmBenchmark.Row] = []
                for shape in shapes {
                    for m in tokenCounts {
                        rows.append(try bench.run(shape: shape, m: m))
                        print(GemmBenchmark.table([rows.last!], device: library.context.device.name).split(separator: "\n").last!)
                    }
                }
                print(GemmBenchmark.table(rows, device: library.context.device.name))
                return rows
            }
        }
    }

    struct Sampling: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sampling a step's rows on the GPU against the logits copied to the host and sampled on all cores.")

        @Option(help: "Comma-separated row counts (sequences per step).")
        var batch = "1,16,64,256"

        @Option(help: "Vocabulary size (Llama-3: 128256).")
        var vocab = 128_256

        @Option(help: "Timed steps per row count (the median is reported).")
        var iterations = 10

        @Option(help: "Also write the rows as JSON to this file.")
        var json: String?

        @OptionGroup var gpu: GPUOptions

        var batches: [Int] { batch.split(separator: ",").compactMap { Int($0) } }

        func validate() throws {
            guard vocab > 0, iterations > 0 else { throw ValidationError("--vocab and --iterations must be positive") }
            guard !batches.isEmpty, batches.allSatisfy({ (1...4096).contains($0) }), batches.count == batch.split(separator: ",").count else {
                throw ValidationError("--batch must be comma-separated row counts from 1 to 4096")
            }
        }

        func run() throws {
            try Bench.report(json: json) {
                let rows = try SamplingBenchmark(library: gpu.makeLibrary(), iterations: iterations).run(batches: batches, vocab: vocab)
                print(SamplingBenchmark.table(rows))
                return rows
            }
        }
    }

    struct Attention: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode attention over a paged KV4 cache against the same kernel over a bf16 cache.")

        @Option(help: "Comma-separated batch sizes (sequences).")
        var batch = "1,16,64,256"

        @Option(help: "Comma-separated context lengths.")
        var length = "1024,4096,8192"

        @Option(help: "KV4 kernel: 16-token blocks in flight per warp, 4 or 8.")
        var stages = DecodeAttentionKernel.Tuning().stages

        @Option(help: "KV4 kernel: tokens per CTA, a multiple of 16, at least 64 (default: chosen per shape).")
        var split: Int?

        @OptionGroup var cache: AttentionShapeOptions

        @Option(help: "Also write the rows as JSON to this file.")
        var json: String?

        @OptionGroup var gpu: GPUOptions

        var batches: [Int] { batch.split(separator: ",").compactMap { Int($0) } }
        var lengths: [Int] { length.split(separator: ",").compactMap { Int($0) } }

        func validate() throws {
            guard !batches.isEmpty, batches.allSatisfy({ (1...65535).contains($0) }), batches.count == batch.split(separator: ",").count
            else { throw ValidationError("--batch takes sequences counts from 1 to 65535, e.g. 1,16") }
            guard !lengths.isEmpty, lengths.allSatisfy({ (1...1_048_576).contains($0) }), lengths.count == length.split(separator: ",").count
            else { throw ValidationError("--length takes context lengths from 1 to 1048576, e.g. 1024,4096") }
            guard [4, 8].contains(stages) else { throw ValidationError("--stages is 4 or 8") }
            guard split.map({ $0 >= 64 && $0 % 16 == 0 }) ?? true else { throw ValidationError("--split is a multiple of 16, at least 64") }
        }

        func run() throws {
            try Bench.report(json: json) {
                let library = try gpu.makeLibrary()
                let bench = AttentionBenchmark(
                    library: library, pageSize: cache.pageSize, tuning: .init(stages: stages, splitLength: split))
                var rows: [AttentionBenchmark.Row] = []
                for b in batches {
                    for l in lengths {
                        let shape = cache.shape
                        rows.append(try bench.run(batch: b, length: l, qHeads: shape[0], kvHeads: shape[1], headDim: shape[2]))
                        print(AttentionBenchmark.table([rows.last!], device: library.context.device.name).split(separator: "\n").last!)
                    }
                }
                print(AttentionBenchmark.table(rows, device: library.context.device.name))
                return rows
            }
        }
    }

    struct PrefillAttention: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prefill-attention",
            abstract: "Causal prefill attention over a paged cache: KV4 in query tiles against KV4 and bf16 one row per CTA.")

        @Option(help: "Comma-separated cached prefix lengths before the chunk.")
        var prefix = "0,1024,4096"

        @Option(help: "Query rows (new tokens) per launch; the GPU runner launches up to 256.")
        var chunk = 256

        @OptionGroup var cache: AttentionShapeOptions

        @Option(help: "Also write the rows as JSON to this file.")
        var json: String?

        @OptionGroup var gpu: GPUOptions

        var prefixes: [Int] { prefix.split(separator: ",").compactMap { Int($0) } }

        func validate() throws {
            guard !prefixes.isEmpty, prefixes.allSatisfy({ (0...131_072).contains($0) }), prefixes.count == prefix.split(separator: ",").count
            else { throw ValidationError("--prefix takes lengths from 0 to 131072, e.g. 0,4096") }
            guard (1...1024).contains(chunk) else { throw ValidationError("--chunk is 1 to 1024 query rows") }
        }

        func run() throws {
            try Bench.report(json: json) {
                let library = try gpu.makeLibrary()
                let bench = AttentionBenchmark(library: library, pageSize: cache.pageSize)
                let shape = cache.shape
                var rows: [AttentionBenchmark.PrefillRow] = []
                for p in prefixes {
                    rows.append(try bench.runPrefill(prefix: p, chunk: chunk, qHeads: shape[0], kvHeads: shape[1], headDim: shape[2]))
                }
                print(AttentionBenchmark.prefillTable(rows, device: library.context.device.name))
                return rows
            }
        }
    }

    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Whole decode steps of a synthetic Llama-3 model: W4AxKV4 against our bf16 runner (cuBLASLt GEMMs, bf16 KV).")

        @Option(help: "Synthetic model shape: llama3-8b or llama3-70b.")
        var synthetic = "llama3-8b"

        @Option(help: "Comma-separated batch sizes (sequences per step).")
        var batch = "1,16,64,256"

        @Option(help: "Context length each sequence decodes at.")
        var length = 1024

        @Option(help: "Timed steps per batch size.")
        var steps = 16

        @Flag(help: "After timing, run one more step eagerly with an event after every kernel and print where its GPU time goes (one GPU).")
        var profile = false

        @Flag(help: "Time W4AxKV4 only (no bf16 baseline).")
        var noBaseline = false

        @Option(help: "GPUs the model is split over (tensor parallelism over NCCL, both sides).")
        var tensorParallel = 1

        @Option(help: "Also write the rows as JSON to this file.")
        var json: String?

        @OptionGroup var gpu: GPUOptions

        var batches: [Int] { batch.split(separator: ",").compactMap { Int($0) } }

        var config: ModelConfig? { DecodeBenchmarkShapes.config(synthetic) }

        func validate() throws {
            guard config != nil else { throw ValidationError("--synthetic is llama3-8b or llama3-70b") }
            guard !batches.isEmpty, batches.allSatisfy({ (1...1024).contains($0) }), batches.count == batch.split(separator: ",").count
            else { throw ValidationError("--batch takes batch sizes from 1 to 1024, e.g. 1,16") }
            guard length > 0, length + steps + 8 <= config!.contextLength else {
                throw ValidationError("--length must leave room for the steps within the model's \(config!.contextLength) positions")
            }
            guard steps > 0 else { throw ValidationError("--steps must be positive") }
            guard tensorParallel >= 1 else { throw ValidationError("--tensor-parallel must be at least 1") }
            if profile && tensorParallel > 1 { throw ValidationError("--profile runs on one GPU (without --tensor-parallel)") }
        }

        func run() throws {
            try Bench.report(json: json) {
                let libraries = try gpu.makeLibraries(count: tensorParallel)
                let library = libraries[0]
                let bench = DecodeBenchmark(libraries: libraries, search: gpu.librarySearch)
                let rows = try bench.run(model: synthetic, config: config!, batches: batches, length: length, steps: steps,
                                         baseline: !noBaseline, profile: profile) { print($0) }
                print("\(library.context.device.name), decode step = ids/tables upload + all layers + LM head + greedy argmax on the GPU + ids to the host")
                print(DecodeBenchmark.table(rows))
                return rows
            }
        }
    }
}

/// The attention shape and cache paging that `bench attention` and `bench prefill-attention` share.
struct AttentionShapeOptions: ParsableArguments {
    @Option(help: "Query heads / KV heads / head dim, e.g. 32/8/128 (Llama-3-8B).")
    var heads = "32/8/128"

    @Option(help: "Tokens per KV page.")
    var pageSize = 64

    /// [query heads, KV heads, head dim]
    var shape: [Int] { heads.split(separator: "/").compactMap { Int($0) } }

    func validate() throws {
        guard shape.count == 3, shape[0] > 0, shape[1] > 0, shape[0] % shape[1] == 0, [64, 128].contains(shape[2])
        else { throw ValidationError("--heads is Q/KV/D with Q a multiple of KV and D 64 or 128, e.g. 32/8/128") }
        guard (1...4096).contains(pageSize) else { throw ValidationError("--page-size is 1 to 4096 tokens") }
    }
}
