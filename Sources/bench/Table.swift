// Table: a Markdown table printed row by row as results arrive, and number formatting for it.
import Foundation

/// A Markdown table whose rows are printed as soon as they are added, so a long benchmark shows
/// progress; a column is as wide as its header or its entry in `widths` (wider cells push right).
struct Table {
    let header: [String]
    let widths: [Int]

    /// Prints the header and the separator line; `widths` are minimum widths of the first columns.
    init(_ header: [String], widths: [Int] = []) {
        self.header = header
        self.widths = header.enumerated().map { i, h in max(h.count, i < widths.count ? widths[i] : 7) }
        printLine(header)
        // Markdown alignment row: the label column left, the numbers right (`---:`).
        let rule = self.widths.enumerated().map { i, w in
            String(repeating: "-", count: i == 0 ? w : w - 1) + (i == 0 ? "" : ":")
        }
        printLine(rule)
    }

    /// Prints one row: the first column left-aligned (a label), the rest right-aligned (numbers).
    func add(_ cells: [String]) {
        precondition(cells.count == header.count, "Table: \(cells.count) cells for \(header.count) columns")
        printLine(cells)
    }

    private func printLine(_ cells: [String]) {
        let padded = cells.enumerated().map { i, cell -> String in
            let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
            return i == 0 ? cell + pad : pad + cell
        }
        print("| " + padded.joined(separator: " | ") + " |")
        fflush(stdout)
    }
}

/// `x` with `digits` decimals.
func fixed(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }

/// A ratio as `0.987`.
func ratio(_ x: Double) -> String { String(format: "%.3f", x) }

/// A fraction as a percentage, `0.034` → `3.4%`.
func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }
