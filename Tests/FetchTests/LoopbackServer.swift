// LoopbackServer: a scripted HTTP/1.1 server on 127.0.0.1 for the download tests; stops by itself.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Serves scripted behaviours per path on an ephemeral loopback port, one thread per connection,
/// `Connection: close` after each answer. Records every request's path and range headers. Shuts
/// down on `stop()` or after `lifetime` seconds, whichever comes first.
final class LoopbackServer: @unchecked Sendable {
    enum Behaviour {
        /// 200 with ETag; honours `Range: bytes=N-` (206) unless If-Range names another ETag.
        case ok(Data)
        /// Always 200 with the whole body, ignoring Range.
        case ignoreRange(Data)
        /// The first `times` answers announce the full length but close after `after` body bytes.
        case drop(Data, after: Int, times: Int)
        /// Always this status.
        case status(Int)
        /// `status` the first `times` requests, then `.ok(data)`.
        case failThen(status: Int, times: Int, Data)
        /// 302 to another path on this server.
        case redirect(String)
        /// Headers and `after` body bytes, then silence until the client gives up or the server stops.
        case stall(Data, after: Int)
        /// Reads the request and never answers.
        case silent
        /// `.ok` without ETag or Last-Modified: nothing to validate a resume with.
        case okBare(Data)
        /// `.drop` without ETag or Last-Modified.
        case dropBare(Data, after: Int, times: Int)
        /// `.ok` with this ETag (a new version of a resource gets a new one).
        case tagged(Data, etag: String)
        /// 200 with `body` sent as is under `Content-Encoding: encoding` and its own length,
        /// whatever the request's Accept-Encoding (an object stored encoded).
        case encoded(Data, encoding: String)
        /// Honours Range but not If-Range, under this ETag: a changed file's tail for an old head.
        case ignoreIfRange(Data, etag: String)
        /// 302 with this Location as is (any scheme).
        case redirectRaw(String)
        /// The n-th request gets the n-th answer, the last one repeated.
        case script([Answer])
    }

    /// One scripted answer: status, header lines, body, and how many body bytes go out before
    /// the connection closes (nil: all).
    struct Answer {
        var status: Int
        var headers: [String]
        var body = Data()
        var cut: Int? = nil
    }

    struct Request {
        var method = "GET"
        var path: String
        var range: String?
        var ifRange: String?
    }

    let port: UInt16
    var base: String { "http://127.0.0.1:\(port)" }
    private let fd: Int32
    private let lock = NSLock()
    private var routes: [String: Behaviour]
    private var counts: [String: Int] = [:]
    private var log: [Request] = []
    private var stopped = false
    private let deadline: Date

    init(_ routes: [String: Behaviour], lifetime: Double = 60) throws {
        self.routes = routes
        deadline = Date().addingTimeInterval(lifetime)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = UInt16(bigEndian: addr.sin_port)
        self.fd = fd
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    deinit { stop() }

    /// Replaces the behaviour of `path` (and restarts its request count).
    func set(_ path: String, _ behaviour: Behaviour) {
        lock.lock()
        routes[path] = behaviour
        counts[path] = 0
        lock.unlock()
    }

    /// Every request served so far.
    var requests: [Request] {
        lock.lock()
        defer { lock.unlock() }
        return log
    }

    func stop() {
        lock.lock()
        let was = stopped
        stopped = true
        lock.unlock()
        if !was { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped || Date() > deadline
    }

    private func acceptLoop() {
        defer { close(fd) }
        while !isStopped {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            let client = accept(fd, nil, nil)
            if client < 0 { continue }
            let t = Thread { [self] in serve(client) }
            t.start()
        }
    }

    private func send(_ c: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.send(c, raw.baseAddress! + done, raw.count - done, Int32(MSG_NOSIGNAL))
                if n <= 0 { return false }
                done += n
            }
            return true
        }
    }

    private func serve(_ c: Int32) {
        defer { close(c) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var request = Data()
        var buf = [UInt8](repeating: 0, count: 4096)
        while request.range(of: Data("\r\n\r\n".utf8)) == nil {
            let n = recv(c, &buf, buf.count, 0)
            if n <= 0 { return }
            request.append(contentsOf: buf[0..<n])
        }
        let lines = String(decoding: request, as: UTF8.self).components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2 else { return }
        let path = String(parts[1])
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        lock.lock()
        let method = String(parts[0])
        log.append(Request(method: method, path: path, range: headers["range"], ifRange: headers["if-range"]))
        let n = counts[path, default: 0]
        counts[path] = n + 1
        let behaviour = routes[path]
        lock.unlock()

        func head(_ status: Int, _ extra: [String]) -> Data {
            let reason = [200: "OK", 206: "Partial Content", 302: "Found", 404: "Not Found", 503: "Service Unavailable"][status] ?? "Status"
            return Data((["HTTP/1.1 \(status) \(reason)", "Connection: close"] + extra + ["", ""]).joined(separator: "\r\n").utf8)
        }
        // The body from the requested offset, honouring Range (and If-Range against our ETag).
        func ranged(_ data: Data, honour: Bool, validator: Bool = true, etag: String = "\"v1\"", ifRange: Bool = true) -> (Data, Data) {
            let tag = validator ? ["ETag: \(etag)"] : []
            var start = 0
            if honour, let r = headers["range"], r.hasPrefix("bytes="), r.hasSuffix("-"),
                let s = Int(r.dropFirst(6).dropLast()), s < data.count, !ifRange || (headers["if-range"].map({ $0 == etag }) ?? true)
            {
                start = s
            }
            let body = data.subdata(in: start..<data.count)
            if start > 0 {
                return (head(206, ["Content-Length: \(body.count)", "Content-Range: bytes \(start)-\(data.count - 1)/\(data.count)"] + tag),
                        body)
            }
            return (head(200, ["Content-Length: \(data.count)"] + tag), body)
        }
        // HEAD: the status line and headers GET would send, never a body.
        func send(_ c: Int32, _ data: Data) -> Bool {
            if method == "HEAD", !data.starts(with: Data("HTTP/".utf8)) { return true }
            return self.send(c, data)
        }
        switch behaviour {
        case .encoded(let body, let encoding):
            _ = send(c, head(200, ["Content-Length: \(body.count)", "Content-Encoding: \(encoding)", "ETag: \"e\""])) && send(c, body)
        case .tagged(let data, let etag):
            let (h, b) = ranged(data, honour: true, etag: etag)
            _ = send(c, h) && send(c, b)
        case nil:
            _ = send(c, head(404, ["Content-Length: 0"]))
        case .status(let s):
            _ = send(c, head(s, ["Content-Length: 0"]))
        case .ok(let data):
            let (h, b) = ranged(data, honour: true)
            _ = send(c, h) && send(c, b)
        case .ignoreRange(let data):
            let (h, b) = ranged(data, honour: false)
            _ = send(c, h) && send(c, b)
        case .failThen(let status, let times, let data):
            if n < times {
                _ = send(c, head(status, ["Content-Length: 0"]))
            } else {
                let (h, b) = ranged(data, honour: true)
                _ = send(c, h) && send(c, b)
            }
        case .drop(let data, let after, let times):
            let (h, b) = ranged(data, honour: true)
            _ = send(c, h) && send(c, n < times ? b.prefix(after) : b)
        case .okBare(let data):
            let (h, b) = ranged(data, honour: true, validator: false)
            _ = send(c, h) && send(c, b)
        case .dropBare(let data, let after, let times):
            let (h, b) = ranged(data, honour: true, validator: false)
            _ = send(c, h) && send(c, n < times ? b.prefix(after) : b)
        case .redirect(let to):
            _ = send(c, head(302, ["Location: \(base)\(to)", "Content-Length: 0"]))
        case .script(let answers):
            let a = answers[min(n, answers.count - 1)]
            _ = send(c, head(a.status, ["Content-Length: \(a.body.count)"] + a.headers)) && send(c, a.cut.map { a.body.prefix($0) } ?? a.body)
        case .redirectRaw(let to):
            _ = send(c, head(302, ["Location: \(to)", "Content-Length: 0"]))
        case .ignoreIfRange(let data, let etag):
            let (h, b) = ranged(data, honour: true, etag: etag, ifRange: false)
            _ = send(c, h) && send(c, b)
        case .stall, .silent:
            if case .stall(let data, let after) = behaviour {
                let (h, b) = ranged(data, honour: true)
                _ = send(c, h) && send(c, b.prefix(after))
            }
            // Silence: hold the connection until the client hangs up or the server stops.
            var byte: UInt8 = 0
            while !isStopped {
                var pfd = pollfd(fd: c, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, 100) > 0, recv(c, &byte, 1, Int32(MSG_DONTWAIT)) <= 0 { break }
            }
        }
    }
}
