import ArborBench
import Testing

@Suite("Reports")
struct ReportTests {
    @Test("a result table prints as aligned text and as RFC 4180 CSV")
    func resultTable() {
        let t = ResultTable(columns: ["set", "tok/s"], rows: [["humaneval", "12.5"], ["a, \"quoted\" set", "3.0"]])
        #expect(t.csv == "set,tok/s\nhumaneval,12.5\n\"a, \"\"quoted\"\" set\",3.0\n")
        let lines = t.text(indent: "").split(separator: "\n")
        #expect(lines.count == 4)
        #expect(lines[2] == "humaneval         12.5")
    }
}
