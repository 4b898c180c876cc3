// ModelFolder: what the T5 reader and the BERT retriever share when they open a Hugging Face
// folder: finding the tokenizer file, and turning config.json decoding errors into field names.
import Foundation
import Tensor

enum ModelFolder {
    /// The tokenizer file to read: `tokenizer` (a file, or a folder searched for `files`) when
    /// given, else the first of `files` in `folder`.
    ///
    /// - Parameters:
    ///   - files: the accepted names, in order of preference (`tokenizer.json`, `spiece.model`…).
    ///   - reference: whose tokenizer FiD's released models use, for the hints ("t5-base's").
    static func tokenizerFile(folder: String, tokenizer: String?, files: [String], reference: String) throws -> String {
        let fm = FileManager.default
        let names = files.joined(separator: " or ")
        func search(_ dir: String) -> String? {
            files.lazy.map { (dir as NSString).appendingPathComponent($0) }.first { fm.fileExists(atPath: $0) }
        }
        if let given = tokenizer {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: given, isDirectory: &isDir) else {
                throw ModelLoadError(path: given, "no such tokenizer file or folder (the 'tokenizer' param)",
                                     hint: "a \(files.joined(separator: ", a ")), or a folder holding one (\(reference))")
            }
            if !isDir.boolValue { return given }
            guard let found = search(given) else {
                throw ModelLoadError(path: given, "holds no \(names) (the 'tokenizer' param)",
                                     hint: "a folder from save_pretrained of the tokenizer, or the file itself")
            }
            return found
        }
        guard let found = search(folder) else {
            throw ModelLoadError(path: folder, "holds no \(names), and no 'tokenizer' param was given",
                                 hint: "FiD's released models ship none and use \(reference): set the 'tokenizer' param to it")
        }
        return found
    }

    /// The bytes and JSON object of `path` (a config.json or a weight index), or a `ModelLoadError` saying
    /// which of missing, unreadable, not JSON or not an object it is (Foundation's own messages
    /// say "The operation could not be completed").
    static func readJSONObject(_ path: String, what: String, hint: String) throws -> (data: Data, object: [String: Any]) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            let parent = (path as NSString).deletingLastPathComponent
            var parentIsDir: ObjCBool = false
            let why = FileManager.default.fileExists(atPath: parent, isDirectory: &parentIsDir) && !parentIsDir.boolValue
                ? "\(parent) is a file, not a folder" : "no such file"
            throw ModelLoadError(path: path, "cannot read the \(what): \(why)", hint: hint)
        }
        if isDir.boolValue { throw ModelLoadError(path: path, "cannot read the \(what): it is a folder", hint: hint) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelLoadError(path: path, "cannot read the \(what) (permission denied?)", hint: hint)
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            let why = (error as NSError).userInfo["NSDebugDescription"] as? String ?? "\(error)"
            throw ModelLoadError(path: path, "is not valid JSON (\(why))", hint: hint)
        }
        guard let json = object as? [String: Any] else {
            throw ModelLoadError(path: path, "is a JSON \(object is [Any] ? "list" : "value"), not an object", hint: hint)
        }
        return (data, json)
    }

    /// Refuses a JSON object that holds none of a model config's identifying fields: every field
    /// has a default, so a tokenizer.json passed as `model_config` would otherwise build a model
    /// of the default shape without a word.
    static func requireConfigFields(_ json: [String: Any], anyOf fields: [String], path: String, model: String) throws {
        guard !fields.contains(where: { json[$0] != nil }) else { return }
        let keys = json.keys.sorted().prefix(6).joined(separator: ", ")
        throw ModelLoadError(path: path, "is not a \(model) config.json: it has none of \(fields.joined(separator: ", "))"
                             + " (its fields: \(keys.isEmpty ? "none" : keys)\(json.count > 6 ? ", …" : ""))",
                             hint: "pass the config.json that save_pretrained writes beside the weights")
    }

    /// Refuses sizes no real model has before anything is allocated: a stray exponent (1e9)
    /// would otherwise abort in the allocator, overflow Int, or build a layout for minutes.
    static func checkLimits(_ fields: [(String, Int, Int)], path: String) throws {
        for (field, value, limit) in fields where value > limit {
            throw ModelLoadError(path: path, "field \(field) is \(value), expected at most \(limit)",
                                 hint: "no released model comes near this; check the value for a typo")
        }
    }

    /// Refuses a config whose parameters alone cannot fit in the memory this process may use
    /// (`AvailableMemory`), before the parameter slab is allocated.
    static func checkParameters(_ layout: ParameterLayout, path: String, available: Int) throws {
        let (bytes, overflow) = layout.count.multipliedReportingOverflow(by: 4)
        guard overflow || bytes > available else { return }
        func gb(_ b: Int) -> String { String(format: "%.1f GB", Double(b) / 1e9) }
        throw ModelLoadError(path: path, "its sizes make \(layout.count) parameters (\(overflow ? "more than 9e18 bytes" : gb(bytes)) of float32), more than the \(gb(available)) this process may use",
                             hint: "check vocab_size and the layer sizes; a job's memory limit (Slurm, a container) counts")
    }

    /// The one number that is no Int (32.5, 1e30) and whose removal lets `data` decode (the
    /// decoder's error names no field then). Other corrupt values keep the decoder's message.
    static func culprit<C: Decodable>(_ type: C.Type, in data: Data) -> (String, Any)? {
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        for (key, value) in json.sorted(by: { $0.key < $1.key }) where !(value is Bool) {
            guard let n = value as? NSNumber, Int(exactly: n.doubleValue) == nil else { continue }
            var rest = json
            rest.removeValue(forKey: key)
            if let d = try? JSONSerialization.data(withJSONObject: rest), (try? JSONDecoder().decode(C.self, from: d)) != nil {
                return (key, value)
            }
        }
        return nil
    }

    /// Decodes a config.json whose architecture was already checked, naming the field that failed.
    static func decodeConfig<C: Decodable>(_ type: C.Type, from data: Data, path: String) throws -> C {
        do { return try JSONDecoder().decode(C.self, from: data) } catch DecodingError.dataCorrupted(_) where culprit(C.self, in: data) != nil {
            // A number that is no Int (32.5, 1e30): the decoder says only "not valid JSON".
            let (field, value) = culprit(C.self, in: data)!
            throw ModelLoadError(path: path, "field \(field) is \(value), expected a whole number in range")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw ModelLoadError(path: path, ctx.debugDescription)
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw ModelLoadError(path: path, "field \(ctx.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type: \(ctx.debugDescription)")
        } catch {
            throw ModelLoadError(path: path, "\(error)")
        }
    }
}
