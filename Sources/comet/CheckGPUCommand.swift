import ArgumentParser
import Glibc
import GPUChecks

struct CheckGPU: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-gpu",
        abstract: "Run every GPU check: each kernel against the CPU reference on fresh random inputs.",
        discussion: "Prints one PASS/FAIL/SKIP line per check and ends with 'N passed, N failed' (and ', N skipped' when a check cannot run here, e.g. without the model file). Exits 1 if any failed.")

    @Option(help: "Seed for the random inputs (default: fresh each run; printed so a failure can be replayed).")
    var seed: UInt64?

    @Option(help: "Run only checks whose name contains this text.")
    var filter: String?

    @Option(help: "GGUF model for the checks on a real model (default: the default model, when it is present).")
    var model: String?

    @OptionGroup var gpu: GPUOptions

    func run() throws {
        let seed = self.seed ?? UInt64.random(in: 0...UInt64.max)
        let checks = GPUCheck.all.filter { filter == nil || $0.name.contains(filter!) }
        guard !checks.isEmpty else { throw fail("no check matches '\(filter ?? "")'") }
        var environment: GPUCheckEnvironment
        do {
            let library = try gpu.makeLibrary()
            let device = library.context.device
            print("GPU \(gpu.device): \(device.name) (\(library.arch)), seed \(seed)")
            let modelPath = model ?? DefaultModel.path()
            environment = GPUCheckEnvironment(
                library: library, stream: try library.context.makeStream(), seed: seed, librarySearch: gpu.librarySearch,
                modelPath: access(modelPath, R_OK) == 0 ? modelPath : nil)
        } catch {
            print("0 passed, \(checks.count) failed")
            throw fail("cannot run GPU checks: \(error)")
        }
        let (passed, failed, skipped) = GPUCheck.run(checks, in: &environment) { print($0) }
        print("\(passed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : ""))
        if failed > 0 { throw ExitCode(1) }
    }
}
