// Fixture: golden tensors written by ops/fixtures (Python/PyTorch) as JSON.
import Foundation
import Tensor

/// A golden fixture file: named tensors plus scalar and integer metadata.
///
/// Format (written by `ops/fixtures/*.py`):
/// `{"tensors": {"name": {"shape": [..], "data": [..]}}, "meta": {"key": number-or-string-or-list}}`.
/// Floats are written with Python's `repr`, so they read back bit-exact.
public struct Fixture {
    public let path: String
    public let tensors: [String: Tensor]
    public let meta: [String: Any]

    /// Loads `name` (e.g. "attention.json") from a folder of fixtures.
    public init(_ name: String, in directory: URL) throws {
        let url = directory.appendingPathComponent(name)
        path = url.path
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FixtureError("\(url.path): cannot read (\(error.localizedDescription)); regenerate with ops/fixtures/generate")
        }
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw FixtureError("\(url.path): not a JSON object")
        }
        var tensors: [String: Tensor] = [:]
        for (key, value) in root["tensors"] as? [String: Any] ?? [:] {
            guard let obj = value as? [String: Any], let shape = obj["shape"] as? [Int],
                let values = obj["data"] as? [Any]
            else { throw FixtureError("\(url.path): tensor '\(key)' needs 'shape' and 'data'") }
            let floats = try values.map { v -> Float in
                if let n = v as? NSNumber { return n.floatValue }
                if let s = v as? String, let f = Float(s) { return f }  // "nan", "inf", "-inf"
                throw FixtureError("\(url.path): tensor '\(key)' holds a non-number \(v)")
            }
            guard floats.count == shape.reduce(1, *) else {
                throw FixtureError("\(url.path): tensor '\(key)' has \(floats.count) values for shape \(shape)")
            }
            tensors[key] = Tensor(shape: shape, data: floats)
        }
        self.tensors = tensors
        self.meta = root["meta"] as? [String: Any] ?? [:]
    }

    /// The tensor called `name`; a missing one is an error naming the fixture.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else {
            throw FixtureError("\(path): no tensor '\(name)' (has \(tensors.keys.sorted()))")
        }
        return t
    }

    /// A numeric metadata value.
    public func number(_ key: String) throws -> Double {
        guard let n = meta[key] as? NSNumber else { throw FixtureError("\(path): no numeric meta '\(key)'") }
        return n.doubleValue
    }
}

public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
