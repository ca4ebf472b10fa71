import ArgumentParser

@main
struct Comet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comet",
        abstract: "Serve LLaMA-family models at W4AxKV4 (FMPQ) with comet's own GPU kernels.",
        version: "0.1.0",
        subcommands: [
            Env.self, Kernels.self, CheckGPU.self, Bench.self,
            Pull.self, Generate.self, Chat.self, Serve.self, Quantize.self, Eval.self, Tokenize.self, Detokenize.self,
        ]
    )
}
