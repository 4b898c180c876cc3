// fidq: the command-line entry point. Subcommands map flags onto configs and call the core.
import ArgumentParser
import Jobs
import Tensor
#if canImport(Glibc)
import Glibc
#endif

@main
struct Fidq: ParsableCommand {
    static let version = fidqVersion

    static let configuration = CommandConfiguration(
        commandName: "fidq",
        abstract: "Fusion-in-Decoder QA and reader-to-retriever distillation, run as a filesystem-queue worker.",
        version: version,
        subcommands: [
            WorkerCommand.self, SubmitCommand.self, StatusCommand.self, CancelCommand.self, RetryCommand.self,
            RunCommand.self, FetchCommand.self, TokenizeCommand.self,
            KindCommand<ScoreCLI>.self, KindCommand<MergeCLI>.self, KindCommand<TrainReaderCLI>.self,
            KindCommand<TrainRetrieverCLI>.self, KindCommand<ExampleCLI>.self,
            KindCommand<EmbedCLI>.self, KindCommand<RetrieveCLI>.self, KindCommand<IndexBM25CLI>.self,
            KindCommand<EvaluateRetrievalCLI>.self,
        ]
    )

    static func main() {
        // A file-size limit (`ulimit -f`, which Slurm passes on from the submitting shell) must
        // fail the write with EFBIG, an error the job reports and the queue retries; by default
        // SIGXFSZ killed the process mid-write without a word, its staging files left behind.
        signal(SIGXFSZ, SIG_IGN)
        // Likewise a closed pipe (Ctrl-C in a terminal also kills `| tee`): the write fails with
        // EPIPE instead of killing the process before its stop saved a checkpoint.
        signal(SIGPIPE, SIG_IGN)
        // A working folder that was deleted read as "", and every relative path resolved under /
        // (the workspace became /, and the workspace's limit nothing); one whose path is not UTF-8
        // was read with U+FFFD, naming another folder. Both refused before any command runs.
        // `--version` and `--help` use no folder and answer anyway.
        let asksOnly = CommandLine.arguments.dropFirst().contains { ["--version", "--help", "-h", "help"].contains($0) }
        if asksOnly {
            // nothing to check
        } else if let cwd = getcwd(nil, 0) {
            defer { free(cwd) }
            if String(validatingCString: cwd) == nil {
                fputs("fidq: the current folder's path is not UTF-8 (\(String(cString: cwd))); rename it, or run fidq from another folder\n", stderr)
                Glibc.exit(1)
            }
        } else if errno == ENOENT {
            fputs("fidq: the current folder no longer exists (it was deleted); cd to another folder and run the command again\n", stderr)
            Glibc.exit(1)
        }
        // Started with stdin, stdout or stderr closed (`>&-`, some daemon launchers), the next
        // file opened would take that number and receive the messages meant for it: /dev/null
        // holds each closed one.
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) == -1 {
            let null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
            if null >= 0, null != fd { dup2(null, fd); close(null) }
        }
        main(nil)
    }
}

/// Options every compute command shares.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Threads for BLAS and fidq's kernels together (default: FIDQ_THREADS, else the cores this process may use: its affinity, e.g. Slurm's or taskset's, and CPU quota).")
    var threads: Int?

    func apply() { Threads.set(threads) }

    /// `--threads 0` (or `--threads=-2`) ran on one thread without a word.
    func validate() throws {
        if let threads, threads < 1 || threads > 4096 {
            // The bounds of a job's `threads` param (ThreadsParam): the two must not disagree.
            throw ValidationError("--threads: expected an integer in 1…4096, found \(threads) (omit it for the cores this process may use)")
        }
    }

    /// What jobs run with: --threads, else FIDQ_THREADS, else the available cores (`Threads`'s
    /// default). Jobs set the compute pools from their context, so this must be passed on.
    var resolved: Int { max(1, threads ?? Threads.count) }
}
