// PickleTests: the safe pickle reader on hand-built opcode streams — values, sharing, whitelist
// refusals, unsupported opcodes, limits, truncation — and a fixed-seed fuzz that must never trap.
import Foundation
import Testing
import TestSupport
@testable import Tensor

/// Pickle opcode bytes for building streams by hand.
enum Op {
    static let proto4: [UInt8] = [0x80, 4]
    static let stop: [UInt8] = [0x2E]
    static let mark: [UInt8] = [0x28]
    static func str(_ s: String) -> [UInt8] {
        let b = Array(s.utf8)
        return [0x8C, UInt8(b.count)] + b
    }
    static func binint(_ v: Int32) -> [UInt8] { [0x4A] + withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
    static func float(_ v: Double) -> [UInt8] { [0x47] + withUnsafeBytes(of: v.bitPattern.bigEndian) { Array($0) } }
}

/// A pickle of `parts` between PROTO 4 and STOP.
func pickle(_ parts: [UInt8]...) -> [UInt8] { Op.proto4 + parts.flatMap { $0 } + Op.stop }

/// The error `body` throws, which must be a `PickleError`.
func pickleError(_ body: () throws -> Any) -> PickleError? {
    do {
        _ = try body()
        return nil
    } catch let e as PickleError {
        return e
    } catch {
        Issue.record("expected a PickleError, got \(error)")
        return nil
    }
}

@Suite struct PickleTests {
    let plain = PickleWhitelist()

    @Test func readsScalarsStringsAndBytes() throws {
        let bytes = pickle(
            Op.mark, [0x4E, 0x88, 0x89], Op.binint(-7), [0x4B, 200], [0x4D, 0x34, 0x12],
            [0x8A, 2, 0x00, 0x80],  // LONG1 -32768
            [0x8A, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],  // LONG1 Int64.max
            [0x8A, 0], Op.float(-1.5), Op.str("naïve"), [0x58, 2, 0, 0, 0, 0x68, 0x69],
            [0x43, 3, 1, 2, 3], [0x42, 1, 0, 0, 0, 9], [0x74])
        let v = try PickleReader.read(bytes, whitelist: plain)
        guard case let .tuple(t) = v else { Issue.record("not a tuple: \(v)"); return }
        #expect(t.map(\.description) == [
            "None", "True", "False", "-7", "200", "4660", "-32768", "\(Int64.max)", "0", "-1.5", "'naïve'", "'hi'",
            "bytes of 3", "bytes of 1",
        ])
        if case let .bytes(b) = t[12] { #expect(b == [1, 2, 3]) } else { Issue.record("element 12: \(t[12])") }
    }

    @Test func containersAndMemoShareReferences() throws {
        // [l, {'a': l, 1: (1, 2)}] where l is memoised empty and filled by a later APPENDS.
        let bytes = pickle(
            [0x5D], [0x94],  // EMPTY_LIST, MEMOIZE 0: the outer list
            [0x5D], [0x71, 1],  // EMPTY_LIST, BINPUT 1: l
            Op.mark, Op.str("x"), Op.str("y"), [0x65],  // APPENDS to l
            [0x61],  // APPEND l to outer
            [0x7D], Op.mark, Op.str("a"), [0x68, 1], [0x4B, 1], [0x4B, 1], [0x4B, 2], [0x86], [0x75],  // SETITEMS
            Op.str("a"), Op.str("replaced"), [0x73],  // SETITEM replaces 'a' in place
            [0x61])
        let v = try PickleReader.read(bytes, whitelist: plain)
        guard case let .list(outer) = v, outer.items.count == 2, case let .list(l) = outer.items[0],
              case let .dict(d) = outer.items[1]
        else { Issue.record("shape: \(v)"); return }
        #expect(l.items.map(\.description) == ["'x'", "'y'"])
        #expect(d.keys.map(\.description) == ["'a'", "1"])
        #expect(d["a"]?.stringValue == "replaced")
        #expect(d[.int(1)]?.sequence?.map(\.description) == ["1", "2"])
        // BINGET 1 before the APPENDS must see the appended items (one shared list).
        let shared = pickle([0x5D, 0x71, 1], [0x68, 1], Op.mark, Op.str("z"), [0x65], [0x86])
        guard case let .tuple(pair) = try PickleReader.read(shared, whitelist: plain),
              case let .list(a) = pair[0], case let .list(b) = pair[1]
        else { Issue.record("shared shape"); return }
        #expect(a === b && a.items.count == 1)
    }

    @Test func framesAndProtocols() throws {
        var framed: [UInt8] = [0x80, 5, 0x95] + withUnsafeBytes(of: UInt64(3).littleEndian) { Array($0) }
        framed += [0x4B, 5, 0x2E]
        #expect(try PickleReader.read(framed, whitelist: plain).intValue == 5)
        let e = pickleError { try PickleReader.read([0x80, 6, 0x4E, 0x2E], whitelist: self.plain) }
        #expect(e?.kind == .unsupportedOpcode && e?.message.contains("protocol 6") == true)
    }

    /// Each global that would run code is refused at its GLOBAL / STACK_GLOBAL, naming it.
    @Test(arguments: [("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("posix", "system"),
                      ("__main__", "Payload"), ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2")])
    func refusesGlobalsNotWhitelisted(module: String, name: String) {
        let call = Op.mark + Op.str("touch /tmp/x") + [0x74, 0x52]
        let stackGlobalAt = 2 + Op.str(module).count + Op.str(name).count
        for (bytes, at) in [(pickle(Op.global(module, name), call), 2), (pickle(Op.str(module), Op.str(name), [0x93], call), stackGlobalAt)] {
            let e = pickleError { try PickleReader.read(bytes, whitelist: self.plain) }
            #expect(e?.kind == .refused)
            #expect(e?.message.contains("'\(module).\(name)'") == true, "\(String(describing: e))")
            #expect(e?.offset == at)
        }
    }

    @Test func callsOnlyWhitelistedCallables() throws {
        var w = PickleWhitelist()
        w.values.insert("torch.FloatStorage")
        w.allowOrderedDict()
        // REDUCE on a value-only global, on a string, on a tuple.
        for callee in [Op.global("torch", "FloatStorage"), Op.str("os.system"), [0x29]] {
            let e = pickleError { try PickleReader.read(pickle(callee, [0x29, 0x52]), whitelist: w) }
            #expect(e?.kind == .refused, "\(String(describing: e))")
        }
        // NEWOBJ on OrderedDict (REDUCE-only here).
        let n = pickleError { try PickleReader.read(pickle(Op.global("collections", "OrderedDict"), [0x29, 0x81]), whitelist: w) }
        #expect(n?.kind == .refused && n?.message.contains("NEWOBJ on 'collections.OrderedDict'") == true)
        // BUILD on a plain dict, a list, an int.
        for target in [[0x7D], [0x5D], [0x4B, 1]] as [[UInt8]] {
            let e = pickleError { try PickleReader.read(pickle(target, [0x7D, 0x62]), whitelist: w) }
            #expect(e?.kind == .refused && e?.message.hasPrefix("BUILD on") == true, "\(String(describing: e))")
        }
        // BUILD on an OrderedDict keeps its attributes.
        let od = try PickleReader.read(
            pickle(Op.global("collections", "OrderedDict"), [0x29, 0x52], [0x7D], Op.str("_metadata"), [0x4E, 0x73, 0x62]), whitelist: w)
        guard case let .dict(d) = od, case let .dict(attrs)? = d.attributes else { Issue.record("\(od)"); return }
        #expect(d.className == "collections.OrderedDict" && attrs.count == 1)
        // Persistent ids are refused without a handler.
        let p = pickleError { try PickleReader.read(pickle([0x29, 0x51]), whitelist: w) }
        #expect(p?.kind == .refused)
    }

    /// Opcodes outside the safe subset are refused by name and offset.
    @Test(arguments: [
        (UInt8(0x69), "INST"), (0x6F, "OBJ"), (0x82, "EXT1"), (0x83, "EXT2"), (0x84, "EXT4"), (0x92, "NEWOBJ_EX"),
        (0x53, "STRING"), (0x50, "PERSID"), (0x8F, "EMPTY_SET"), (0x91, "FROZENSET"), (0x97, "NEXT_BUFFER"),
        (0x98, "READONLY_BUFFER"), (0x54, "BINSTRING"), (0x55, "SHORT_BINSTRING"), (0xFF, "unknown opcode 0xFF"),
    ])
    func refusesOtherOpcodes(op: UInt8, name: String) {
        let e = pickleError { try PickleReader.read(pickle(Op.str("a"), [op, 0x31, 0x0A, 0x32, 0x0A]), whitelist: self.plain) }
        #expect(e?.kind == .unsupportedOpcode)
        #expect(e?.offset == 5)
        #expect(e?.message.contains(name) == true, "\(String(describing: e))")
    }

    /// Protocols 0 and 1 write numbers, text and memo indexes as lines; the expected values are
    /// Python's `pickle.loads` of the same bytes. UNICODE is raw-unicode-escape: latin-1 bytes, and
    /// `\u` / `\U` escapes only after an odd number of backslashes.
    @Test func readsTextOpcodes() throws {
        let bytes = Array(#"(I01\#nI00\#nI-12\#nL123456789012L\#nF-1.5\#nFinf\#nVa\u00e9\U0001f600 "#.utf8) + [0xE9]
            + Array(#"\\\u0041\\u0041\#np7\#ng7\#nt."#.utf8)
        let v = try PickleReader.read(bytes, whitelist: plain)
        let text = #"aé😀 é\\A\\u0041"#
        #expect(v.sequence?.map(\.description) == ["True", "False", "-12", "123456789012", "-1.5", "inf", "'\(text)'", "'\(text)'"])
        #expect(v.sequence?.last?.stringValue == text)
        let cases: [(String, PickleError.Kind, String)] = [
            (#"V\u12\#n."#, .malformed, "bad \\u escape"),
            (#"Vx\U0011FFFF\#n."#, .malformed, "bad \\U escape"),
            ("Np-1\n.", .malformed, "negative memo index -1"),
            ("g0\n.", .malformed, "memo entry 0"),
            ("Iabc\n.", .malformed, "'abc', expected a decimal integer"),
            ("I99999999999999999999\n.", .malformed, "fits in 64 bits"),
            ("F0x1p3\n.", .malformed, "expected a number"),
            ("F1e5000\n.", .malformed, "expected a number"),
            ("Fnan(0x1)\n.", .malformed, "expected a number"),
            ("I010\n.", .malformed, "expected a decimal integer"),
            ("I+1\n.", .malformed, "expected a decimal integer"),
            (#"V\u+041\#n."#, .malformed, "bad \\u escape"),
            ("Fnope\n.", .malformed, "expected a number"),
            ("Np0", .truncated, "no terminating newline"),
        ]
        for (stream, kind, message) in cases {
            let e = pickleError { try PickleReader.read(Array(stream.utf8), whitelist: self.plain) }
            #expect(e?.kind == kind && e?.message.contains(message) == true, "\(stream): \(String(describing: e))")
        }
    }

    /// Protocols 0–2 write `bytes` as `_codecs.encode(text, 'latin1')`, or `bytes()` when empty: read
    /// only when allowed, only that encoding, and never any other call.
    @Test func readsProtocol2Bytes() throws {
        func encode(_ text: [UInt8], _ encoding: String) -> [UInt8] {
            pickle(Op.global("_codecs", "encode"), [0x58] + withUnsafeBytes(of: UInt32(text.count).littleEndian) { Array($0) } + text,
                   Op.str(encoding), [0x86, 0x52])
        }
        var w = PickleWhitelist()
        w.allowProtocol2Bytes()
        let latin = encode(Array("\u{0}é\u{FF}".utf8), "latin1")
        #expect(pickleError { try PickleReader.read(latin, whitelist: self.plain) }?.kind == .refused)
        guard case let .bytes(b) = try PickleReader.read(latin, whitelist: w) else { Issue.record("not bytes"); return }
        #expect(b == [0, 0xE9, 0xFF])
        for module in ["__builtin__", "builtins"] {
            guard case let .bytes(e) = try PickleReader.read(pickle(Op.global(module, "bytes"), [0x29, 0x52]), whitelist: w) else {
                Issue.record("\(module).bytes() is not bytes"); return
            }
            #expect(e.isEmpty)
            let withArgument = pickleError { try PickleReader.read(pickle(Op.global(module, "bytes"), Op.binint(9), [0x85, 0x52]), whitelist: w) }
            #expect(withArgument?.kind == .refused && withArgument?.message.contains("only bytes()") == true)
        }
        let utf8 = pickleError { try PickleReader.read(encode(Array("a".utf8), "utf-8"), whitelist: w) }
        #expect(utf8?.kind == .refused && utf8?.message.contains("'utf-8'") == true)
        let wide = pickleError { try PickleReader.read(encode(Array("Ā".utf8), "latin1"), whitelist: w) }
        #expect(wide?.kind == .malformed && wide?.message.contains("U+100") == true)
    }

    @Test func malformedStreamsThrow() {
        let cases: [([UInt8], PickleError.Kind, String)] = [
            ([0x80, 2, 0x4E], .truncated, "without STOP"),
            ([0x80, 2, 0x58, 0xFF, 0xFF, 0xFF, 0x7F], .truncated, "declares 2147483647 bytes"),
            ([0x80, 4, 0x8D] + [UInt8](repeating: 0xFF, count: 8), .truncated, "declares"),
            ([0x80, 4, 0x8E, 1, 0, 0], .truncated, "needs 8 more bytes"),
            ([0x80, 2, 0x4A, 1, 2], .truncated, "needs 4 more bytes"),
            ([0x80, 2, 0x63, 0x6F, 0x73], .truncated, "newline"),
            ([0x80, 2, 0x68, 3, 0x2E], .malformed, "memo entry 3"),
            ([0x80, 2, 0x30, 0x2E], .malformed, "empty stack"),
            ([0x80, 2, 0x74, 0x2E], .malformed, "without a MARK"),
            ([0x80, 2, 0x28, 0x4E, 0x85, 0x85, 0x2E], .malformed, "STOP with"),
            ([0x80, 2, 0x4E, 0x28, 0x85, 0x2E], .malformed, "empty stack"),  // TUPLE1 may not pop past a MARK
            ([0x80, 2, 0x4E, 0x4E, 0x2E], .malformed, "STOP with 2 values"),
            ([0x80, 2, 0x4B, 1, 0x4B, 2, 0x61, 0x2E], .malformed, "expected a list"),
            ([0x80, 2, 0x7D, 0x5D, 0x4E, 0x73, 0x2E], .malformed, "not a plain hashable"),
            ([0x80, 2, 0x7D, 0x28, 0x4E, 0x75, 0x2E], .malformed, "key-value pairs"),
            ([0x80, 2, 0x8C, 2, 0xC3, 0x28, 0x2E], .malformed, "UTF-8"),
            ([0x80, 2, 0x8A, 9] + [UInt8](repeating: 1, count: 9) + [0x2E], .unsupportedOpcode, "integer of 9 bytes"),
            ([0x80, 2, 0x4E, 0x4E, 0x93, 0x2E], .malformed, "STACK_GLOBAL needs two strings"),
            ([], .truncated, "without STOP"),
        ]
        for (bytes, kind, text) in cases {
            let e = pickleError { try PickleReader.read(bytes, whitelist: self.plain) }
            #expect(e?.kind == kind && e?.message.contains(text) == true, "\(bytes): \(String(describing: e))")
        }
    }

    @Test func limitsBoundMarksAndStack() {
        let marks = [UInt8](repeating: 0x28, count: PickleReader.maxMarks + 1)
        let e = pickleError { try PickleReader.read([0x80, 2] + marks, whitelist: self.plain) }
        #expect(e?.kind == .limit && e?.offset == 2 + PickleReader.maxMarks)
        // DUP doubling cannot exceed the stack limit.
        let dups = [0x80, 2, 0x4E] + [UInt8](repeating: 0x32, count: PickleReader.maxStack) + [0x2E]
        let s = pickleError { try PickleReader.read(dups, whitelist: self.plain) }
        #expect(s?.kind == .limit)
    }

    /// A dict key of shared tuples (None, then DUP + TUPLE2 22 times: 51 bytes) would expand to
    /// 2^23 values when copied out into a hashable key (each level doubles it); it is refused,
    /// while a short tuple key is kept.
    @Test func dictKeysOfSharedTuplesAreBounded() throws {
        let dag: [UInt8] = [0x80, 2, 0x7D, 0x4E] + Array([[UInt8]](repeating: [0x32, 0x86], count: 22).joined()) + [0x4E, 0x73, 0x2E]
        let e = pickleError { try PickleReader.read(dag, whitelist: self.plain) }
        #expect(e?.kind == .malformed && e?.message.contains("at most \(PickleKey.maxParts) parts") == true, "\(String(describing: e))")
        let small: [UInt8] = [0x80, 2, 0x7D, 0x4E, 0x32, 0x86, 0x4E, 0x73, 0x2E]  // {(None, None): None}
        #expect(try PickleReader.read(small, whitelist: plain).kind == "dict of 1")
    }

    /// Deep nesting is refused before it is built (Swift would free it recursively and overflow
    /// the stack), as are containers that become deeper after being nested (recursive values).
    @Test func nestingIsBounded() throws {
        let ok = [0x80, 2, 0x4E] + [UInt8](repeating: 0x85, count: PickleReader.maxDepth) + [0x2E]
        #expect(try PickleReader.read(ok, whitelist: plain).kind == "tuple of 1")
        let tuples = [0x80, 2, 0x4E] + [UInt8](repeating: 0x85, count: 1_000_000) + [0x2E]
        let e = pickleError { try PickleReader.read(tuples, whitelist: self.plain) }
        #expect(e?.kind == .limit && e?.offset == 3 + PickleReader.maxDepth, "\(String(describing: e))")
        // n empty lists, then n-1 APPENDs: each list into the one below it.
        let lists = [0x80, 2] + [UInt8](repeating: 0x5D, count: 100_000) + [UInt8](repeating: 0x61, count: 99_999) + [0x2E]
        #expect(pickleError { try PickleReader.read(lists, whitelist: self.plain) }?.kind == .limit)
        // Lists memoised, each appended to the previous while still empty, then filled: the chain
        // would grow deep behind its parents' backs.
        var chain: [UInt8] = [0x80, 2, 0x5D, 0x71, 0]
        for i in 1..<255 { chain += [0x68, UInt8(i - 1), 0x5D, 0x71, UInt8(i), 0x61, 0x30] }
        chain += [0x2E]
        let c = pickleError { try PickleReader.read(chain, whitelist: self.plain) }
        #expect(c?.kind == .refused && c?.message.contains("deeper after being nested") == true, "\(String(describing: c))")
        // A list appended to itself.
        let recursive: [UInt8] = [0x80, 2, 0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E]
        #expect(pickleError { try PickleReader.read(recursive, whitelist: self.plain) }?.kind == .refused)
        // Adding flat items to a nested list is fine.
        let flat: [UInt8] = [0x80, 2, 0x5D, 0x71, 0, 0x85, 0x68, 0, 0x4B, 1, 0x61, 0x30, 0x2E]
        #expect(try PickleReader.read(flat, whitelist: plain).kind == "tuple of 1")
    }

    /// Random byte flips and truncations of real pickles must throw or succeed, never trap.
    @Test func fuzzedPicklesNeverTrap() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/pickle")
        let valid = try [UInt8](Data(contentsOf: folder.appendingPathComponent("shard_f32.pkl")))
        let archive = try ZipArchive(path: folder.appendingPathComponent("state.bin").path)
        let torchPickle = try archive.data("state/data.pkl")
        let textPickle = try [UInt8](Data(contentsOf: folder.appendingPathComponent("shard_p0_escapes.pkl")))
        var rng = SplitMix(seed: 20261130)
        var outcomes = [0, 0]
        // FIDQ_FUZZ_ROUNDS raises the count for a longer stress run.
        let rounds = ProcessInfo.processInfo.environment["FIDQ_FUZZ_ROUNDS"].flatMap { Int($0) } ?? 3000
        for round in 0..<rounds {
            let bytes = rng.damaged([valid, torchPickle, textPickle][round % 3], round: round)
            var w = NumpyPickle.whitelist
            w.allowOrderedDict()
            w.persistentLoad = { _ in .none }
            do {
                _ = try PickleReader.read(bytes, whitelist: w)
                outcomes[0] += 1
            } catch is PickleError {
                outcomes[1] += 1
            }
        }
        #expect(outcomes[1] > 0)
        // Every prefix of a valid pickle is an error, not a trap.
        for n in 0..<valid.count {
            #expect(throws: PickleError.self) { try PickleReader.read(Array(valid.prefix(n)), whitelist: NumpyPickle.whitelist) }
        }
    }
}
