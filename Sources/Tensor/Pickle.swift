// Pickle: a safe reader for Python 3's pickles (protocols 0–5) that never runs code. Globals
// resolve only through a whitelist of Swift rebuild functions; every other global or opcode is an
// error.

/// A pickle that cannot be read safely: malformed, truncated, over a limit, or asking for
/// something the whitelist does not allow. `offset` is the byte offset of the opcode concerned.
public struct PickleError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// The data ends inside an opcode or before STOP.
        case truncated
        /// An opcode fidq does not read (named in the message).
        case unsupportedOpcode
        /// A global not on the whitelist, or a call/BUILD the whitelist does not allow.
        case refused
        /// Well-formed opcodes in an impossible order (stack underflow, a key that is not
        /// hashable, a bad memo index, a bad UTF-8 string) or values of the wrong form.
        case malformed
        /// Over a limit on stack, memo or nesting.
        case limit
        /// The file holding the pickle cannot be read.
        case io
    }

    public let kind: Kind
    public let offset: Int?
    public let message: String
    public let hint: String?
    /// The file the pickle came from, when known.
    public var source: String?

    public init(_ kind: Kind, offset: Int?, _ message: String, hint: String? = nil, source: String? = nil) {
        self.kind = kind
        self.offset = offset
        self.message = message
        self.hint = hint
        self.source = source
    }

    public var description: String {
        (source.map { "\($0): " } ?? "") + (offset.map { "at byte \($0): " } ?? "") + message
            + (hint.map { " (hint: \($0))" } ?? "")
    }
}

/// The globals a `PickleReader` accepts, each mapped to what it may do. A global on no list is
/// refused at the GLOBAL / STACK_GLOBAL opcode, before anything could use it.
public struct PickleWhitelist {
    /// `module.name` → the Swift function REDUCE calls with the argument tuple.
    public var reduce: [String: ([PickleValue]) throws -> PickleValue] = [:]
    /// `module.name` → the Swift function NEWOBJ calls with the argument tuple (`cls.__new__`).
    public var newObject: [String: ([PickleValue]) throws -> PickleValue] = [:]
    /// Globals accepted only as inert values (a class passed as an argument, a storage type).
    public var values: Set<String> = []
    /// BINPERSID's handler; nil refuses persistent ids.
    public var persistentLoad: ((PickleValue) throws -> PickleValue)?

    public init() {}

    /// Whether `name` may appear at all.
    public func allows(_ name: String) -> Bool {
        reduce[name] != nil || newObject[name] != nil || values.contains(name)
    }

    /// Adds `collections.OrderedDict`, rebuilt as a `PickleDict` (its BUILD state is kept as
    /// `attributes`, e.g. a state dict's `_metadata`).
    public mutating func allowOrderedDict() {
        reduce["collections.OrderedDict"] = { args in
            let d = PickleDict(className: "collections.OrderedDict")
            guard !args.isEmpty else { return .dict(d) }
            // OrderedDict(pairs): a list or tuple of 2-tuples.
            guard args.count == 1, let pairs = args[0].sequence else {
                throw PickleError(.malformed, offset: nil,
                                  "collections.OrderedDict takes no argument or one list of pairs, got \(args.map(\.kind))")
            }
            for p in pairs {
                guard let kv = p.sequence, kv.count == 2, d.set(kv[0], kv[1]) else {
                    throw PickleError(.malformed, offset: nil, "collections.OrderedDict: item \(p.kind) is not a (key, value) pair")
                }
            }
            return .dict(d)
        }
    }

    /// Adds how protocols 0–2 write `bytes` (they have no bytes opcode): `_codecs.encode(text,
    /// 'latin1')`, one byte per character, and `bytes()` for an empty value. Both are pure
    /// conversions; any other encoding or argument is refused.
    public mutating func allowProtocol2Bytes() {
        reduce["_codecs.encode"] = { args in
            guard args.count == 2, let text = args[0].stringValue, let encoding = args[1].stringValue else {
                throw PickleError(.malformed, offset: nil, "_codecs.encode expects (text, encoding), got \(args.map(\.kind))")
            }
            guard ["latin1", "latin-1", "iso-8859-1"].contains(encoding.lowercased()) else {
                throw PickleError(.refused, offset: nil, "_codecs.encode to '\(encoding)'; fidq reads only the 'latin1' that pickle writes bytes with")
            }
            var out: [UInt8] = []
            out.reserveCapacity(text.unicodeScalars.count)
            for u in text.unicodeScalars {
                guard u.value < 256 else {
                    throw PickleError(.malformed, offset: nil, "_codecs.encode: U+\(String(u.value, radix: 16, uppercase: true)) has no latin1 byte")
                }
                out.append(UInt8(u.value))
            }
            return .bytes(out)
        }
        for module in ["__builtin__", "builtins"] {
            reduce["\(module).bytes"] = { args in
                guard args.isEmpty else {
                    throw PickleError(.refused, offset: nil, "bytes with \(args.count) arguments; fidq reads only bytes(), an empty value")
                }
                return .bytes([])
            }
        }
    }
}

/// Reads one pickle from bytes into a `PickleValue`, executing nothing.
///
/// Opcodes read: PROTO, FRAME, STOP, MARK, POP, POP_MARK, DUP, NONE, NEWTRUE, NEWFALSE, BININT,
/// BININT1, BININT2, LONG1, LONG4 (up to 8 bytes), BINFLOAT, SHORT_BINUNICODE, BINUNICODE,
/// BINUNICODE8, SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8, EMPTY_TUPLE, TUPLE, TUPLE1–3,
/// EMPTY_LIST, LIST, APPEND, APPENDS, EMPTY_DICT, DICT, SETITEM, SETITEMS, BINPUT, LONG_BINPUT,
/// MEMOIZE, BINGET, LONG_BINGET, GLOBAL, STACK_GLOBAL, REDUCE, NEWOBJ, BUILD, BINPERSID, and the
/// text forms protocols 0 and 1 use: INT, LONG, FLOAT, UNICODE, PUT, GET. Every other opcode
/// (Python 2's strings, INST, OBJ, EXT*, sets, out-of-band buffers, …) is a `.unsupportedOpcode`
/// error naming it and its offset. Every length is checked against the bytes left before anything
/// is allocated; stack, memo, marks and the nesting depth of values are bounded, and values that
/// contain themselves are refused.
public struct PickleReader {
    public static let maxStack = 1 << 20
    public static let maxMemo = 1 << 20
    public static let maxMarks = 1 << 12
    /// Deepest nesting of containers. Swift frees nested values recursively, so an unbounded
    /// depth (a million TUPLE1s is a 1 MB file) would overflow the thread's stack.
    public static let maxDepth = 256

    private let data: [UInt8]
    private var whitelist: PickleWhitelist
    private var pos = 0
    private var stack: [PickleValue] = []
    /// The nesting depth of each stack value (lists and dicts keep theirs up to date themselves).
    private var depths: [Int] = []
    private var marks: [Int] = []
    private var memo: [Int: (PickleValue, Int)] = [:]
    /// Offset of the opcode being run, for errors.
    private var at = 0

    public init(_ data: [UInt8], whitelist: PickleWhitelist) {
        self.data = data
        self.whitelist = whitelist
    }

    /// Reads `data` to its STOP opcode and returns the value left on the stack.
    public static func read(_ data: [UInt8], whitelist: PickleWhitelist) throws -> PickleValue {
        var r = PickleReader(data, whitelist: whitelist)
        return try r.run()
    }

    // MARK: - byte access

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= data.count - pos else {
            throw PickleError(.truncated, offset: at,
                              "opcode \(Self.name(data[at])) needs \(n) more bytes, \(data.count - pos) left")
        }
        defer { pos += n }
        return data[pos..<(pos + n)]
    }

    private mutating func byte() throws -> UInt8 { try take(1).first! }

    private mutating func uint(_ n: Int) throws -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in try take(n).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }

    /// A length field of `n` bytes, checked against the bytes left.
    private mutating func length(_ n: Int) throws -> Int {
        let v = try uint(n)
        guard v <= UInt64(data.count - pos) else {
            throw PickleError(.truncated, offset: at,
                              "opcode \(Self.name(data[at])) declares \(v) bytes, only \(data.count - pos) left")
        }
        return Int(v)
    }

    /// The bytes up to the next newline (the argument of a text opcode), skipping the newline.
    private mutating func lineBytes() throws -> ArraySlice<UInt8> {
        guard let nl = data[pos...].firstIndex(of: 0x0A) else {
            throw PickleError(.truncated, offset: at, "opcode \(Self.name(data[at]))'s argument has no terminating newline")
        }
        defer { pos = nl + 1 }
        return data[pos..<nl]
    }

    private mutating func line() throws -> String { try utf8(try lineBytes()) }

    /// A decimal integer line (INT, LONG, PUT, GET), as Python's `repr` writes it.
    private mutating func decimal(allowingSuffixL: Bool = false) throws -> Int {
        var text = try line()
        if allowingSuffixL, text.hasSuffix("L") { text.removeLast() }
        // Digits as `repr` writes them: an optional minus, no leading zero (CPython's two
        // unpicklers read "010" as 8 or refuse it), no plus sign or spaces.
        let digits = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }), digits == "0" || !digits.hasPrefix("0"),
              let v = Int(text)
        else {
            throw PickleError(.malformed, offset: at, "opcode \(Self.name(data[at])) has the argument '\(text.prefix(40))', expected a decimal integer that fits in 64 bits")
        }
        return v
    }

    /// A memo index of PUT or GET.
    private mutating func memoIndex() throws -> Int {
        let i = try decimal()
        guard i >= 0 else { throw PickleError(.malformed, offset: at, "opcode \(Self.name(data[at])) with the negative memo index \(i)") }
        return i
    }

    /// UNICODE's argument: Python's raw-unicode-escape, latin-1 bytes in which `\uXXXX` and
    /// `\UXXXXXXXX` (after an odd number of backslashes) stand for one code point.
    private mutating func rawUnicodeEscape() throws -> String {
        let bytes = try lineBytes()
        var out = String.UnicodeScalarView()
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            guard b == 0x5C else {  // not a backslash: a latin-1 character
                out.append(Unicode.Scalar(b))
                i += 1
                continue
            }
            var run = 0
            while i < bytes.endIndex, bytes[i] == 0x5C {
                out.append("\\")
                run += 1
                i += 1
            }
            guard run % 2 == 1, i < bytes.endIndex, bytes[i] == 0x75 || bytes[i] == 0x55 else { continue }  // u, U
            let width = bytes[i] == 0x75 ? 4 : 8
            let digits = bytes[(i + 1)...].prefix(width)
            let isHex = { (b: UInt8) in (48...57).contains(b) || (65...70).contains(b) || (97...102).contains(b) }
            guard digits.count == width, digits.allSatisfy(isHex), let v = UInt32(String(decoding: digits, as: UTF8.self), radix: 16),
                  let scalar = Unicode.Scalar(v)
            else {
                throw PickleError(.malformed, offset: at, "UNICODE has a bad \\\(width == 4 ? "u" : "U") escape")
            }
            out.removeLast()  // the backslash that began the escape
            out.append(scalar)
            i += 1 + width
        }
        return String(out)
    }

    private func utf8(_ bytes: ArraySlice<UInt8>) throws -> String {
        guard let s = validUTF8(bytes) else {
            throw PickleError(.malformed, offset: at, "a string of \(bytes.count) bytes is not valid UTF-8")
        }
        return s
    }

    // MARK: - stack

    typealias Entry = (value: PickleValue, depth: Int)

    private mutating func push(_ v: PickleValue, depth: Int = 0) throws {
        guard stack.count < Self.maxStack else {
            throw PickleError(.limit, offset: at, "stack over \(Self.maxStack) items")
        }
        stack.append(v)
        depths.append(depth)
    }

    private mutating func push(_ e: Entry) throws { try push(e.value, depth: e.depth) }

    private mutating func popEntry() throws -> Entry {
        guard stack.count > (marks.last ?? 0) else {
            throw PickleError(.malformed, offset: at, "opcode \(Self.name(data[at])) on an empty stack")
        }
        return (stack.removeLast(), depths.removeLast())
    }

    private mutating func pop() throws -> PickleValue { try popEntry().value }

    private func topEntry() throws -> Entry {
        guard stack.count > (marks.last ?? 0) else {
            throw PickleError(.malformed, offset: at, "opcode \(Self.name(data[at])) on an empty stack")
        }
        return (stack[stack.count - 1], depths[depths.count - 1])
    }

    private func top() throws -> PickleValue { try topEntry().value }

    /// The items pushed since the last MARK, removing them and the mark.
    private mutating func popMark() throws -> [Entry] {
        guard let m = marks.popLast() else {
            throw PickleError(.malformed, offset: at, "opcode \(Self.name(data[at])) without a MARK")
        }
        let items = Array(zip(stack[m...], depths[m...]))
        stack.removeSubrange(m...)
        depths.removeSubrange(m...)
        return items.map { (value: $0.0, depth: $0.1) }
    }

    private mutating func memoize(_ index: Int, _ e: Entry) throws {
        guard memo.count < Self.maxMemo || memo[index] != nil else {
            throw PickleError(.limit, offset: at, "memo over \(Self.maxMemo) entries")
        }
        memo[index] = e
    }

    private func memoGet(_ index: Int) throws -> Entry {
        guard let e = memo[index] else {
            throw PickleError(.malformed, offset: at, "memo entry \(index) is fetched before it is stored")
        }
        return e
    }

    // MARK: - nesting depth

    /// `e`'s current depth: lists and dicts track theirs as they grow.
    private static func depth(_ e: Entry) -> Int {
        switch e.value {
        case let .list(l): return l.depth
        case let .dict(d): return d.depth
        default: return e.depth
        }
    }

    /// The depth of a container of `items`, checked against the limit; marks the items' lists
    /// and dicts as contained.
    private func nest(_ items: [Entry]) throws -> Int {
        var d = 1
        for item in items {
            d = Swift.max(d, Self.depth(item) + 1)
            switch item.value {
            case let .list(l): l.contained = true
            case let .dict(x): x.contained = true
            default: break
            }
        }
        guard d <= Self.maxDepth else {
            throw PickleError(.limit, offset: at, "values nested over \(Self.maxDepth) deep")
        }
        return d
    }

    /// The new depth of a list or dict at `depth` gaining `items`. A container already inside
    /// another may not get deeper (its parents' depths would be stale), which also refuses
    /// self-containing (recursive) values.
    private func grow(_ depth: Int, contained: Bool, with items: [Entry]) throws -> Int {
        let d = Swift.max(depth, try nest(items))
        guard !contained || d == depth else {
            throw PickleError(.refused, offset: at, "a container gets deeper after being nested (a recursive value?)",
                              hint: "fidq reads only tree-shaped pickles")
        }
        return d
    }

    private func recursive() -> PickleError {
        PickleError(.refused, offset: at, "a container is put inside itself (a recursive value)", hint: "fidq reads only tree-shaped pickles")
    }

    private func pushTuple(_ items: [Entry]) throws -> Entry { (.tuple(items.map(\.value)), try nest(items)) }

    // MARK: - the machine

    /// Runs to STOP.
    public mutating func run() throws -> PickleValue {
        while true {
            guard pos < data.count else {
                throw PickleError(.truncated, offset: pos, "the pickle ends without STOP", hint: "a truncated file?")
            }
            at = pos
            let op = data[pos]
            pos += 1
            switch op {
            case 0x80:  // PROTO
                let v = try byte()
                guard v <= 5 else {
                    throw PickleError(.unsupportedOpcode, offset: at, "pickle protocol \(v); fidq reads protocols 0 to 5")
                }
            case 0x95:  // FRAME: a length prefix for buffering; the opcodes inside are read as usual.
                _ = try length(8)
            case 0x2E:  // STOP
                guard marks.isEmpty, stack.count == 1 else {
                    throw PickleError(.malformed, offset: at,
                                      "STOP with \(stack.count) values on the stack and \(marks.count) open MARKs, expected 1 and 0")
                }
                return stack[0]
            case 0x28:  // MARK
                guard marks.count < Self.maxMarks else {
                    throw PickleError(.limit, offset: at, "over \(Self.maxMarks) nested MARKs")
                }
                marks.append(stack.count)
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32: try push(try topEntry())  // DUP
            case 0x4E: try push(.none)  // NONE
            case 0x88: try push(.bool(true))  // NEWTRUE
            case 0x89: try push(.bool(false))  // NEWFALSE
            case 0x4A: try push(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))  // BININT
            case 0x4B: try push(.int(Int(try byte())))  // BININT1
            case 0x4D: try push(.int(Int(try uint(2))))  // BININT2
            case 0x8A: try push(.int(try long(try length(1))))  // LONG1
            case 0x8B: try push(.int(try long(try length(4))))  // LONG4
            case 0x47:  // BINFLOAT: big-endian IEEE double
                var v: UInt64 = 0
                for b in try take(8) { v = v << 8 | UInt64(b) }
                try push(.float(Double(bitPattern: v)))
            case 0x8C: try push(.string(try utf8(try take(try length(1)))))  // SHORT_BINUNICODE
            case 0x58: try push(.string(try utf8(try take(try length(4)))))  // BINUNICODE
            case 0x8D: try push(.string(try utf8(try take(try length(8)))))  // BINUNICODE8
            case 0x43: try push(.bytes(Array(try take(try length(1)))))  // SHORT_BINBYTES
            case 0x42: try push(.bytes(Array(try take(try length(4)))))  // BINBYTES
            case 0x8E, 0x96: try push(.bytes(Array(try take(try length(8)))))  // BINBYTES8, BYTEARRAY8
            case 0x29: try push(.tuple([]))  // EMPTY_TUPLE
            case 0x74: try push(try pushTuple(try popMark()))  // TUPLE
            case 0x85: try push(try pushTuple([try popEntry()]))  // TUPLE1
            case 0x86:  // TUPLE2
                let b = try popEntry(), a = try popEntry()
                try push(try pushTuple([a, b]))
            case 0x87:  // TUPLE3
                let c = try popEntry(), b = try popEntry(), a = try popEntry()
                try push(try pushTuple([a, b, c]))
            case 0x5D: try push(.list(PickleList()))  // EMPTY_LIST
            case 0x6C:  // LIST
                let l = PickleList()
                try append(l, try popMark())
                try push(.list(l))
            case 0x61:  // APPEND
                let v = try popEntry()
                try append(try list(try top()), [v])
            case 0x65:  // APPENDS
                let items = try popMark()
                try append(try list(try top()), items)
            case 0x7D: try push(.dict(PickleDict()))  // EMPTY_DICT
            case 0x64:  // DICT
                let items = try popMark()
                let d = PickleDict()
                try setItems(d, items)
                try push(.dict(d))
            case 0x73:  // SETITEM
                let v = try popEntry(), k = try popEntry()
                try setItems(try dict(try top()), [k, v])
            case 0x75:  // SETITEMS
                let items = try popMark()
                try setItems(try dict(try top()), items)
            // Protocols 0 and 1 write numbers, text and memo indexes as lines.
            case 0x49:  // INT: "01" and "00" are True and False
                let v = try decimalOrBool()
                try push(v)
            case 0x4C: try push(.int(try decimal(allowingSuffixL: true)))  // LONG
            case 0x46:  // FLOAT: `repr` of a float — digits, sign, point, exponent — or inf / nan
                let text = try line()
                let named = ["inf", "-inf", "nan", "infinity", "-infinity", "+inf", "+infinity"].contains(text.lowercased())
                let plain = !text.isEmpty && text.utf8.allSatisfy { (48...57).contains($0) || [43, 45, 46, 69, 101].contains($0) }
                guard named || plain, let v = Double(text), named || v.isFinite else {
                    throw PickleError(.malformed, offset: at, "FLOAT has the argument '\(text.prefix(40))', expected a number")
                }
                try push(.float(v))
            case 0x56: try push(.string(try rawUnicodeEscape()))  // UNICODE
            case 0x70: try memoize(try memoIndex(), try topEntry())  // PUT
            case 0x67: try push(try memoGet(try memoIndex()))  // GET
            case 0x53, 0x54, 0x55:  // STRING, BINSTRING, SHORT_BINSTRING: Python 2's str
                throw PickleError(.unsupportedOpcode, offset: at, "opcode \(Self.name(op)) holds a Python 2 string",
                                  hint: "load the file in Python 3 (pickle.load(f, encoding='latin1')) and dump it again")
            case 0x71: try memoize(Int(try byte()), try topEntry())  // BINPUT
            case 0x72: try memoize(Int(try uint(4)), try topEntry())  // LONG_BINPUT
            case 0x94: try memoize(memo.count, try topEntry())  // MEMOIZE
            case 0x68: try push(try memoGet(Int(try byte())))  // BINGET
            case 0x6A: try push(try memoGet(Int(try uint(4))))  // LONG_BINGET
            case 0x63:  // GLOBAL: "module\nname\n"
                let module = try line()
                let name = try line()
                try push(try global(module, name))
            case 0x93:  // STACK_GLOBAL
                let n = try pop(), m = try pop()
                guard let module = m.stringValue, let name = n.stringValue else {
                    throw PickleError(.malformed, offset: at, "STACK_GLOBAL needs two strings, got \(m.kind) and \(n.kind)")
                }
                try push(try global(module, name))
            case 0x52:  // REDUCE: callable(*args)
                let args = try popEntry(), f = try pop()
                try push(try call(f, args, table: whitelist.reduce, opcode: "REDUCE"))
            case 0x81:  // NEWOBJ: cls.__new__(cls, *args)
                let args = try popEntry(), cls = try pop()
                try push(try call(cls, args, table: whitelist.newObject, opcode: "NEWOBJ"))
            case 0x62:  // BUILD: obj.__setstate__(state); obj stays on the stack.
                let state = try popEntry()
                try build(try topEntry(), state)
            case 0x51:  // BINPERSID
                let pid = try popEntry()
                guard let load = whitelist.persistentLoad else {
                    throw PickleError(.refused, offset: at, "persistent id \(pid.value.kind) in a pickle that may not have any")
                }
                do { try push(try load(pid.value), depth: Self.depth(pid)) } catch let e as PickleError { throw located(e) }
            default:
                throw PickleError(.unsupportedOpcode, offset: at, "opcode \(Self.name(op)) is not allowed",
                                  hint: "fidq reads only the opcodes torch.save and pickle.dump use for tensors, arrays and plain data")
            }
        }
    }

    /// INT's value: an integer, or a bool written as "01" / "00" (protocol 0 has no bool opcode).
    private mutating func decimalOrBool() throws -> PickleValue {
        let start = pos
        let text = try line()
        if text == "01" { return .bool(true) }
        if text == "00" { return .bool(false) }
        pos = start
        return .int(try decimal())
    }

    /// A little-endian two's-complement integer of `n` bytes (LONG1/LONG4) that fits in an Int.
    private mutating func long(_ n: Int) throws -> Int {
        let bytes = try take(n)
        guard n <= 8 else {
            throw PickleError(.unsupportedOpcode, offset: at, "integer of \(n) bytes; fidq reads integers up to 8 bytes")
        }
        guard n > 0 else { return 0 }
        var v: UInt64 = 0
        for (i, b) in bytes.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        // Sign-extend from the top byte.
        if n < 8 && bytes.last! & 0x80 != 0 { v |= ~0 << (8 * UInt64(n)) }
        return Int(Int64(bitPattern: v))
    }

    private func list(_ v: PickleValue) throws -> PickleList {
        guard case let .list(l) = v else {
            throw PickleError(.malformed, offset: at, "opcode \(Self.name(data[at])) on a \(v.kind), expected a list")
        }
        return l
    }

    private func dict(_ v: PickleValue) throws -> PickleDict {
        guard case let .dict(d) = v else {
            throw PickleError(.malformed, offset: at, "opcode \(Self.name(data[at])) on a \(v.kind), expected a dict")
        }
        return d
    }

    private func append(_ l: PickleList, _ items: [Entry]) throws {
        for item in items { if case let .list(x) = item.value, x === l { throw recursive() } }
        l.depth = try grow(l.depth, contained: l.contained, with: items)
        l.items.append(contentsOf: items.map(\.value))
    }

    private func setItems(_ d: PickleDict, _ items: [Entry]) throws {
        guard items.count % 2 == 0 else {
            throw PickleError(.malformed, offset: at, "opcode \(Self.name(data[at])) with \(items.count) items, expected key-value pairs")
        }
        for item in items { if case let .dict(x) = item.value, x === d { throw recursive() } }
        d.depth = try grow(d.depth, contained: d.contained, with: items)
        for i in stride(from: 0, to: items.count, by: 2) where !d.set(items[i].value, items[i + 1].value) {
            throw PickleError(.malformed, offset: at, "dict key \(items[i].value.kind) is not a plain hashable value of at most \(PickleKey.maxParts) parts")
        }
    }

    private func global(_ module: String, _ name: String) throws -> PickleValue {
        let g = PickleGlobal(module: module, name: name)
        guard whitelist.allows(g.qualifiedName) else {
            throw PickleError(.refused, offset: at, "global '\(g.qualifiedName)' is not allowed",
                              hint: "fidq rebuilds only tensors, arrays and plain data and never runs code from a pickle")
        }
        return .global(g)
    }

    /// The result of calling `f`; it may hold the arguments, so it counts as deep as they are.
    private func call(
        _ f: PickleValue, _ args: Entry, table: [String: ([PickleValue]) throws -> PickleValue], opcode: String
    ) throws -> Entry {
        let result = try call(f, args.value, table: table, opcode: opcode)
        let depth = Self.depth(args)
        switch result {
        case let .list(l): l.depth = Swift.max(l.depth, depth)
        case let .dict(d): d.depth = Swift.max(d.depth, depth)
        default: break
        }
        return (result, depth)
    }

    private func call(
        _ f: PickleValue, _ args: PickleValue, table: [String: ([PickleValue]) throws -> PickleValue], opcode: String
    ) throws -> PickleValue {
        guard case let .global(g) = f else {
            throw PickleError(.refused, offset: at, "\(opcode) on a \(f.kind); only whitelisted globals may be called")
        }
        guard let fn = table[g.qualifiedName] else {
            throw PickleError(.refused, offset: at, "\(opcode) on '\(g.qualifiedName)' is not allowed")
        }
        guard case let .tuple(a) = args else {
            throw PickleError(.malformed, offset: at, "\(opcode) on '\(g.qualifiedName)' with a \(args.kind) of arguments, expected a tuple")
        }
        do { return try fn(a) } catch let e as PickleError { throw located(e, in: g.qualifiedName) }
    }

    private mutating func build(_ target: Entry, _ stateEntry: Entry) throws {
        let state = stateEntry.value
        switch target.value {
        case let .object(o):
            // The object may keep the state: it becomes as deep as the state.
            let d = try nest([stateEntry])
            do { try o.build(state: state) } catch let e as PickleError { throw located(e, in: "BUILD of a \(o.pickleKind)") }
            depths[depths.count - 1] = Swift.max(target.depth, d)
        case let .dict(d) where d.className == "collections.OrderedDict":
            // An OrderedDict's instance attributes (torch's state dicts carry `_metadata`): kept as data.
            switch state {
            case .none, .dict:
                d.depth = try grow(d.depth, contained: d.contained, with: [stateEntry])
                d.attributes = state
            default:
                throw PickleError(.malformed, offset: at, "BUILD of an OrderedDict with a \(state.kind), expected a dict or None")
            }
        default:
            throw PickleError(.refused, offset: at, "BUILD on a \(target.value.kind) is not allowed")
        }
    }

    /// `e` with this opcode's offset (and the callee's name) when it has none.
    private func located(_ e: PickleError, in context: String? = nil) -> PickleError {
        guard e.offset == nil else { return e }
        return PickleError(e.kind, offset: at, (context.map { "\($0): " } ?? "") + e.message, hint: e.hint)
    }

    /// The opcode's name as Python's `pickletools` spells it, with its byte.
    static func name(_ op: UInt8) -> String {
        let hex = "0x" + String(op, radix: 16, uppercase: true)
        return (opcodeNames[op].map { "\($0) (\(hex))" }) ?? "unknown opcode \(hex)"
    }

    private static let opcodeNames: [UInt8: String] = [
        0x28: "MARK", 0x2E: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT", 0x49: "INT",
        0x4A: "BININT", 0x4B: "BININT1", 0x4C: "LONG", 0x4D: "BININT2", 0x4E: "NONE", 0x50: "PERSID",
        0x51: "BINPERSID", 0x52: "REDUCE", 0x53: "STRING", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING",
        0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND", 0x62: "BUILD", 0x63: "GLOBAL", 0x64: "DICT",
        0x7D: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET", 0x69: "INST", 0x6A: "LONG_BINGET",
        0x6C: "LIST", 0x5D: "EMPTY_LIST", 0x6F: "OBJ", 0x70: "PUT", 0x71: "BINPUT", 0x72: "LONG_BINPUT",
        0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE", 0x75: "SETITEMS", 0x47: "BINFLOAT",
        0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1",
        0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8A: "LONG1", 0x8B: "LONG4",
        0x42: "BINBYTES", 0x43: "SHORT_BINBYTES", 0x8C: "SHORT_BINUNICODE", 0x8D: "BINUNICODE8",
        0x8E: "BINBYTES8", 0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX",
        0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER",
        0x98: "READONLY_BUFFER",
    ]
}

/// `bytes` as a String when they are valid UTF-8 (decoding repairs invalid bytes, so a changed
/// round trip means invalid; `String(validating:as:)` would say it directly but needs macOS 15).
func validUTF8<C: Collection>(_ bytes: C) -> String? where C.Element == UInt8 {
    let s = String(decoding: bytes, as: UTF8.self)
    return s.utf8.elementsEqual(bytes) ? s : nil
}
