import Foundation
import PackagePlugin

/// Embeds the target's `cuda/*.cu` and `*.cuh` files into the binary as Swift string
/// literals, so the `comet` binary needs no files beside it.
@main
struct EmbedKernelSourcesPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let folder = target.directoryURL.appending(path: "cuda")
        let files = try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            .filter { ["cu", "cuh"].contains($0.pathExtension) }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedKernelSources.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(files.count) CUDA sources",
                executable: try context.tool(named: "EmbedKernelSources").url,
                arguments: [output.path] + files.map(\.path),
                inputFiles: files,
                outputFiles: [output])
        ]
    }
}
