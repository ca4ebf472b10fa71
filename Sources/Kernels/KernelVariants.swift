import CUDA

/// The entry points of one kernel family, one per template instantiation, looked up by a key
/// of plain values: choosing a variant at launch time builds no string and allocates nothing.
struct KernelVariants<Key: Hashable & Sendable>: Sendable {
    private let functions: [Key: KernelFunction]

    /// Loads `name(key)` from `source` for every key.
    init(library: KernelLibrary, source: String, keys: [Key], name: (Key) -> String) throws {
        var functions: [Key: KernelFunction] = [:]
        for key in keys { functions[key] = try library.function(name(key), in: source) }
        self.functions = functions
    }

    /// Every variant, e.g. to set an attribute on all of them.
    var all: Dictionary<Key, KernelFunction>.Values { functions.values }

    subscript(key: Key) -> KernelFunction {
        guard let function = functions[key] else { preconditionFailure("no kernel variant \(key)") }
        return function
    }
}
