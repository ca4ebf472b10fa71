/// Element types a checkpoint stores, named as safetensors names them.
public enum TensorDType: String, Sendable, Equatable, Codable, CaseIterable {
    case u8 = "U8", i8 = "I8", f16 = "F16", bf16 = "BF16", f32 = "F32", i32 = "I32"

    public var byteSize: Int {
        switch self {
        case .u8, .i8: return 1
        case .f16, .bf16: return 2
        case .f32, .i32: return 4
        }
    }
}

/// A dense row-major tensor as raw little-endian bytes, the unit a checkpoint stores.
public struct Tensor: Sendable, Equatable {
    public let dtype: TensorDType
    public let shape: [Int]
    /// shape.product x dtype.byteSize bytes.
    public let bytes: [UInt8]

    public init(dtype: TensorDType, shape: [Int], bytes: [UInt8]) throws {
        guard shape.allSatisfy({ $0 >= 0 }), Self.elements(shape) * dtype.byteSize == bytes.count else {
            throw QuantError.shapeMismatch("\(bytes.count) bytes for a \(dtype.rawValue) tensor of shape \(shape)")
        }
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    public init(_ values: [UInt8], shape: [Int]) throws { try self.init(dtype: .u8, shape: shape, bytes: values) }
    public init(_ values: [Int8], shape: [Int]) throws { try self.init(dtype: .i8, shape: shape, bytes: Self.raw(values)) }
    public init(_ values: [Float16], shape: [Int]) throws { try self.init(dtype: .f16, shape: shape, bytes: Self.raw(values)) }
    public init(_ values: [BFloat16], shape: [Int]) throws { try self.init(dtype: .bf16, shape: shape, bytes: Self.raw(values)) }
    public init(_ values: [Float], shape: [Int]) throws { try self.init(dtype: .f32, shape: shape, bytes: Self.raw(values)) }
    public init(_ values: [Int32], shape: [Int]) throws { try self.init(dtype: .i32, shape: shape, bytes: Self.raw(values)) }

    public var elementCount: Int { Self.elements(shape) }

    /// The elements as `T`; throws unless `T` is the tensor's dtype.
    public func values<T: BitwiseCopyable>(as type: T.Type) throws -> [T] {
        let expected: Any.Type
        switch dtype {
        case .u8: expected = UInt8.self
        case .i8: expected = Int8.self
        case .f16: expected = Float16.self
        case .bf16: expected = BFloat16.self
        case .f32: expected = Float.self
        case .i32: expected = Int32.self
        }
        guard expected == T.self else { throw QuantError.shapeMismatch("tensor is \(dtype.rawValue), read as \(T.self)") }
        return [T](unsafeUninitializedCapacity: elementCount) { buffer, count in
            bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: $0) }
            count = elementCount
        }
    }

    static func elements(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    /// Little-endian bytes of `values` (every platform we build for is little-endian).
    static func raw<T: BitwiseCopyable>(_ values: [T]) -> [UInt8] {
        values.withUnsafeBytes { [UInt8]($0) }
    }
}
