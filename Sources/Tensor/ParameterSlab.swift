// ParameterSlab: every parameter of a model as a named view over one flat Float buffer (llm.c's
// ParameterTensors), with a Hugging Face name table; gradients and optimizer moments reuse it.

/// Where each named parameter lives in one flat buffer.
///
/// Entries are laid out in insertion order without gaps. A tied name (`encoder.embed_tokens.weight`
/// for `shared.weight`) is an alias that resolves to the same range, so loading, saving and
/// gradients see one tensor. The same layout describes parameters, gradients and Adam's moments,
/// so clipping and the optimizer step are single loops over `count` floats.
public struct ParameterLayout: Sendable, Equatable {
    /// One parameter: its canonical name, shape and offset in the slab.
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        /// Element count.
        public var count: Int { shape.reduce(1, *) }
        /// Element range in the slab.
        public var range: Range<Int> { offset..<(offset + count) }
    }

    /// Parameters in slab order.
    public private(set) var entries: [Entry] = []
    /// Tied names: alias → canonical name.
    public private(set) var aliases: [String: String] = [:]
    /// Total floats.
    public private(set) var count = 0
    private var index: [String: Int] = [:]

    public init() {}

    /// Appends a parameter; a repeated name is a bug.
    public mutating func add(_ name: String, _ shape: [Int]) {
        precondition(index[name] == nil && aliases[name] == nil, "ParameterLayout: '\(name)' added twice")
        precondition(shape.allSatisfy { $0 >= 0 }, "ParameterLayout: negative size in \(shape) for '\(name)'")
        index[name] = entries.count
        entries.append(Entry(name: name, shape: shape, offset: count))
        count += shape.reduce(1, *)
    }

    /// Makes `alias` another name for the existing parameter `name` (weight tying).
    public mutating func tie(_ alias: String, to name: String) {
        precondition(index[name] != nil, "ParameterLayout: tie '\(alias)' to unknown '\(name)'")
        precondition(index[alias] == nil && aliases[alias] == nil, "ParameterLayout: '\(alias)' already named")
        aliases[alias] = name
    }

    /// The entry for a canonical name or an alias; nil when unknown.
    public func entry(_ name: String) -> Entry? {
        if let i = index[aliases[name] ?? name] { return entries[i] }
        return nil
    }

    /// Every alias of a canonical name, sorted.
    public func aliases(of name: String) -> [String] {
        aliases.filter { $0.value == name }.map(\.key).sorted()
    }

    /// Whether the name (canonical or alias) is in the layout.
    public func contains(_ name: String) -> Bool { entry(name) != nil }
}

/// One flat buffer of `layout.count` floats with named views; a reference type so that the
/// model, its gradients and the optimizer can hold pointers into it for its lifetime.
public final class ParameterSlab: @unchecked Sendable {
    public let layout: ParameterLayout
    /// The floats, 64-byte aligned, zero-initialised.
    public let base: UnsafeMutablePointer<Float>

    /// A zeroed slab of the layout.
    public init(layout: ParameterLayout) {
        self.layout = layout
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, layout.count) * 4, alignment: 64)
        base = raw.bindMemory(to: Float.self, capacity: max(1, layout.count))
        base.initialize(repeating: 0, count: max(1, layout.count))
    }

    deinit { UnsafeMutableRawPointer(base).deallocate() }

    /// Total floats.
    public var count: Int { layout.count }
    /// The whole slab.
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: layout.count) }

    /// The first float of a parameter (canonical name or alias); an unknown name is a bug.
    public subscript(_ name: String) -> UnsafeMutablePointer<Float> {
        guard let e = layout.entry(name) else { preconditionFailure("ParameterSlab: no parameter '\(name)'") }
        return base + e.offset
    }

    /// The floats of one parameter.
    public func buffer(_ name: String) -> UnsafeMutableBufferPointer<Float> {
        guard let e = layout.entry(name) else { preconditionFailure("ParameterSlab: no parameter '\(name)'") }
        return UnsafeMutableBufferPointer(start: base + e.offset, count: e.count)
    }

    /// Sets every float to zero (before accumulating gradients).
    public func zero() { base.update(repeating: 0, count: layout.count) }

    /// Copies another slab of the same layout.
    public func copy(from other: ParameterSlab) {
        precondition(other.layout == layout, "ParameterSlab.copy: layouts differ")
        base.update(from: other.base, count: layout.count)
    }

    /// A copy of one parameter as a Tensor (tests, saving).
    public func tensor(_ name: String) -> Tensor {
        guard let e = layout.entry(name) else { preconditionFailure("ParameterSlab: no parameter '\(name)'") }
        return Tensor(shape: e.shape, data: Array(UnsafeBufferPointer(start: base + e.offset, count: e.count)))
    }

    /// Every parameter under its canonical name, in slab order; `prefix` is put before each name.
    public func tensorMap(prefix: String = "", source: String = "parameter slab") -> TensorMap {
        TensorMap(layout.entries.map { (prefix + $0.name, tensor($0.name)) }, source: source)
    }

    /// Writes every parameter under its canonical name as F32 safetensors (temporary name, then
    /// renamed into place).
    public func save(to path: String, metadata: [String: String]? = ["format": "pt"]) throws {
        try SafeTensors.write(tensorMap(), to: path, metadata: metadata)
    }

    /// Fills the slab from tensors found by `locate`, which maps a parameter's canonical name and
    /// aliases to the file that holds one of them (nil: none does). Each tensor is converted
    /// straight into its range.
    ///
    /// - Throws: `TensorMapError.missing` naming the tensor and the file searched,
    ///   `TensorMapError.shape` naming the tensor, the file and both shapes, or the file's
    ///   conversion errors.
    public func load(
        missingSource: String, locate: (_ names: [String]) -> (file: SafeTensorsFile, name: String)?,
        skip: Set<String> = []
    ) throws {
        for e in layout.entries where !skip.contains(e.name) {
            let names = [e.name] + layout.aliases(of: e.name)
            guard let (file, name) = locate(names) else {
                throw TensorMapError.missing(name: e.name, source: missingSource, close: [])
            }
            let found = try file.entry(name).shape
            // A (N) tensor stored as (N) or with squeezable unit axes is still a shape mismatch:
            // Hugging Face checkpoints store exact shapes.
            guard found == e.shape else {
                throw TensorMapError.shape(name: name, source: file.path, expected: e.shape, found: found)
            }
            try file.read(name, into: buffer(e.name))
            try checkFinite(e, name: name, source: file.path)
        }
    }

    /// Refuses a loaded parameter holding NaN or ±inf, naming it: such weights make every output
    /// NaN, which used to surface far away (an embedding shard's JSON record, empty retrievals).
    func checkFinite(_ e: ParameterLayout.Entry, name: String, source: String) throws {
        let values = UnsafeBufferPointer(start: base + e.offset, count: e.count)
        if let i = values.firstIndex(where: { !$0.isFinite }) {
            throw TensorMapError.nonFinite(name: name, source: source, index: i, value: values[i])
        }
    }

    /// Fills the slab from one safetensors file (a tied parameter may be stored under any of its names).
    public func load(from file: SafeTensorsFile) throws {
        let have = Set(file.names)
        try load(missingSource: file.path) { names in
            names.first(where: have.contains).map { (file, $0) }
        }
    }

    /// Fills the slab from a `TensorMap` (e.g. a PyTorch checkpoint), by name with aliases.
    public func load(from map: TensorMap) throws {
        for e in layout.entries {
            let names = [e.name] + layout.aliases(of: e.name)
            guard let name = names.first(where: map.contains) else {
                throw TensorMapError.missing(name: e.name, source: map.source, close: map.closeNames(to: e.name))
            }
            let t = try map.tensor(name)
            guard t.shape == e.shape else {
                throw TensorMapError.shape(name: name, source: map.source, expected: e.shape, found: t.shape)
            }
            t.withUnsafeBufferPointer { src in
                if let s = src.baseAddress { (base + e.offset).update(from: s, count: e.count) }
            }
            try checkFinite(e, name: name, source: map.source)
        }
    }
}

extension AdamState {
    /// Saves the moments as safetensors through the layout's names (`m.<name>`, `v.<name>`),
    /// with the step count in the metadata; temporary name, then renamed.
    public func save(to path: String, layout: ParameterLayout) throws {
        precondition(m.count == layout.count && v.count == layout.count, "AdamState.save: state for \(m.count) floats, layout has \(layout.count)")
        var map = TensorMap(source: path)
        for (prefix, values) in [("m.", m), ("v.", v)] {
            for e in layout.entries {
                map.append(prefix + e.name, Tensor(shape: e.shape, data: Array(values[e.range])))
            }
        }
        try SafeTensors.write(map, to: path, metadata: ["step": String(step), "format": "fidq-adam"])
    }

    /// Loads state saved by `save(to:layout:)`.
    /// - Throws: the file's errors; a missing or mis-shaped moment names it; a missing or
    ///   malformed step is a `SafeTensorsError` `.headerLayout`.
    public static func load(from path: String, layout: ParameterLayout) throws -> AdamState {
        let file = try SafeTensorsFile(path: path)
        guard let text = file.metadata?["step"], let step = Int(text), step >= 0 else {
            throw SafeTensorsError(.headerLayout, path: path, "metadata has no non-negative integer 'step'",
                                   hint: "optimizer state files are written by fidq (AdamState.save)")
        }
        var state = AdamState(count: layout.count)
        state.step = step
        for (prefix, isM) in [("m.", true), ("v.", false)] {
            for e in layout.entries {
                let name = prefix + e.name
                let found = try file.entry(name).shape
                guard found == e.shape else {
                    throw TensorMapError.shape(name: name, source: path, expected: e.shape, found: found)
                }
                if isM {
                    try state.m.withUnsafeMutableBufferPointer { try file.read(name, into: UnsafeMutableBufferPointer(rebasing: $0[e.range])) }
                } else {
                    try state.v.withUnsafeMutableBufferPointer { try file.read(name, into: UnsafeMutableBufferPointer(rebasing: $0[e.range])) }
                }
                // A moment that is NaN, infinite or (second moment) negative froze or poisoned
                // its weights after resuming, and the error then blamed lr.
                let moment = isM ? state.m[e.range] : state.v[e.range]
                if let i = moment.firstIndex(where: { !$0.isFinite || (!isM && $0 < 0) }) {
                    let value = moment[i]
                    throw value.isFinite ? TensorMapError.negative(name: name, source: path, index: i - e.range.lowerBound, value: value)
                                         : TensorMapError.nonFinite(name: name, source: path, index: i - e.range.lowerBound, value: value)
                }
            }
        }
        return state
    }
}
