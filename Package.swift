// swift-tools-version:6.1
import PackageDescription

// One module per concept; the dependency arrows point one way:
//   comet (CLI) -> GPUChecks, Benchmarks -> Kernels -> CUDA
//                                    \-> CPUReference (the exact CPU ground truth)
//   comet (CLI) -> FMPQModel -> CPUBackend -> Engine -> Model -> Quant (safetensors)
//                                                \-> Sampling
//   comet (CLI) -> GPUBackend -> Engine, Kernels, FMPQModel (CPUBackend and GPUBackend implement Engine's `ModelRunner`)
//   comet (CLI) -> Server (OpenAI HTTP API, the only JSON) -> Engine
let package = Package(
    name: "comet",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "comet", targets: ["comet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The HTTP server. No traits: its defaults pull in full Foundation (and ICU), which the
        // static binary keeps out (scripts/build-gpu-binary.sh); FoundationEssentials is enough.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Already under Hummingbird; named for `comet bench serve`'s HTTP client.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The server tests' HTTP client (HummingbirdTesting builds it anyway); not in the binary.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // Thin Swift bindings of the CUDA driver API and NVRTC, loaded with dlopen:
        // nothing from CUDA is needed to build.
        .target(name: "CUDA"),
        // Exact CPU implementations of every kernel: what the GPU is tested against.
        .target(name: "CPUReference"),
        // FMPQ formats (layout, INT4/INT8 codes, scales) and the exact W4Ax reference.
        .target(name: "Quant"),
        // The model files (GGUF, Hugging Face folders of safetensors), config, tokenizers and chat
        // templates. Uses Quant's safetensors header reader, the one both checkpoints and HF shards use.
        .target(name: "Model", dependencies: ["Quant"]),
        // The llama forward pass on the CPU (fp32, multi-threaded, SIMD): runs the default model
        // without a GPU, and is the float reference for the GPU path.
        // Also the engine's CPU `ModelRunner` over a paged KV store.
        .target(name: "CPUBackend", dependencies: ["Model", "Engine"]),
        // FMPQ on a whole model: calibration through the CPU forward pass, quantize to a checkpoint,
        // and the quantized CPU forward (W4Ax linears, KV4) that evaluates it.
        .target(name: "FMPQModel", dependencies: ["CPUBackend", "Model", "Quant"]),
        // Next-token sampling from logits (greedy, temperature, top-k/p, min-p, penalties, seeded).
        .target(name: "Sampling"),
        // The serving engine: requests, scheduler (continuous batching, chunked prefill, preemption),
        // paged KV block manager with prefix caching; runs any backend through `ModelRunner`.
        .target(name: "Engine", dependencies: ["Model", "Sampling"]),
        // `comet serve`: the OpenAI-compatible HTTP API over any `GenerationEngine` (routes, OpenAI
        // types, SSE, auth, Prometheus metrics, graceful shutdown). The only module that touches JSON.
        .target(
            name: "Server",
            dependencies: [
                "Engine", "Model", "Sampling",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // `comet bench serve`: the HTTP load generator (streaming clients; throughput, TTFT, TPOT).
        // Reads the server's own OpenAI types; prompts are seeded token ids (CPUReference's SplitMix64).
        .target(
            name: "ServeBenchmark",
            dependencies: [
                "Server", "CPUReference",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // CUDA C++ kernel sources (embedded into the binary), the NVRTC JIT cache and launchers.
        .target(
            name: "Kernels",
            dependencies: ["CUDA", "Quant"],
            exclude: ["cuda"],
            plugins: ["EmbedKernelSourcesPlugin"]
        ),
        // The model on the GPU for the engine: weights (FMPQ checkpoint, bf16, synthetic) and the
        // step runner over the paged KV cache.
        .target(name: "GPUBackend", dependencies: ["Engine", "CUDA", "Kernels", "Model", "Quant", "Sampling", "CPUBackend", "CPUReference", "FMPQModel"]),
        // Every GPU check (kernel against the CPU reference) and benchmark, runnable from the CLI.
        .target(name: "GPUChecks", dependencies: [
            "CUDA", "Kernels", "CPUReference", "CPUBackend", "Model", "Quant", "GPUBackend", "FMPQModel", "Engine", "Sampling",
        ]),
        // Benchmarks that time our kernels and the vendor baseline in the same run.
        .target(name: "Benchmarks", dependencies: ["CUDA", "Kernels", "CPUReference", "Quant", "GPUBackend", "Engine", "Model"]),
        .executableTarget(
            name: "comet",
            dependencies: [
                "CUDA", "Kernels", "GPUChecks", "Benchmarks", "Model", "CPUBackend", "Sampling", "FMPQModel", "Quant", "Engine",
                "GPUBackend", "Server", "ServeBenchmark",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Build-time tool: turns Sources/Kernels/cuda/*.cu(h) into Swift string literals.
        .executableTarget(name: "EmbedKernelSources"),
        .plugin(
            name: "EmbedKernelSourcesPlugin",
            capability: .buildTool(),
            dependencies: ["EmbedKernelSources"]
        ),
        .testTarget(name: "CUDATests", dependencies: ["CUDA"]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "CUDA", "Quant", "CPUReference"]),
        .testTarget(name: "CPUReferenceTests", dependencies: ["CPUReference"]),
        .testTarget(name: "QuantTests", dependencies: ["Quant", "CPUReference"]),
        // Runs the built `comet` binary end to end.
        .testTarget(name: "CometCLITests", dependencies: ["comet"]),
        // Fixtures are read through #filePath (golden ids from scripts/make_golden_*.py).
        .testTarget(name: "ModelTests", dependencies: ["Model", "Quant"], exclude: ["Fixtures"]),
        // The CPU forward pass against numpy and llama.cpp goldens (scripts/make_golden_logits.py).
        .testTarget(name: "CPUBackendTests", dependencies: ["CPUBackend", "Engine", "Model", "Quant", "CPUReference"], exclude: ["Fixtures"]),
        .testTarget(name: "SamplingTests", dependencies: ["Sampling"]),
        // The block pool, scheduler and engine on a fake runner; the engine on the real model's CPU runner.
        .testTarget(name: "EngineTests", dependencies: ["Engine", "CPUBackend", "Model", "Sampling"]),
        // Calibration, quantize -> checkpoint -> load, and the quantized forward on the real model.
        .testTarget(name: "FMPQModelTests", dependencies: ["FMPQModel", "CPUBackend", "CPUReference", "Engine", "Model", "Quant", "Sampling"]),
        // The server against a fake engine: every route and error in-process, streaming, disconnects,
        // load and `comet bench serve`'s client on a real loopback port.
        .testTarget(
            name: "ServerTests",
            dependencies: [
                // comet: `comet bench serve` runs against the live test server.
                "Server", "ServeBenchmark", "Engine", "Model", "Sampling", "comet",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
    ]
)
