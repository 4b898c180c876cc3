// StepHook: a callback at each protocol step, so test builds can crash a worker in narrow windows.
/// Named protocol steps: `claim` (folder made, job not yet moved in), `claimed` (job moved in,
/// no heartbeat yet), `takeover` (folder renamed, claim not yet rewritten), `commit` (result
/// written, folder not yet renamed into done/). Production code never sets a hook; the test
/// module's `CrashPoints` installs one that SIGKILLs the process at chosen steps.
public enum StepHook {
    nonisolated(unsafe) private static var hook: (@Sendable (String) -> Void)?

    /// Installs the hook; call once at start-up, before any worker thread runs.
    public static func install(_ body: @escaping @Sendable (String) -> Void) { hook = body }

    static func reached(_ step: String) { hook?(step) }
}
