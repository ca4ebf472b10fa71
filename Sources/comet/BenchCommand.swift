import ArgumentParser
import Benchmarks
import FoundationEssentials

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print our figure and the vendor's from the same run, and their ratio.",
        subcommands: [Copy.self])

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
            do {
                let result = try CopyBenchmark(library: gpu.makeLibrary(), bytes: mib << 20, iterations: iterations).run()
                print(CopyBenchmark.table(result))
                if let json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try encoder.encode(result).write(to: URL(filePath: json))
                }
            } catch let exit as ExitCode {
                throw exit
            } catch {
                throw fail("\(error)")
            }
        }
    }
}
