import ArborEngine
import Testing
@testable import ArborBench

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

    @Test("bench spec's rows as CSV: one header, plain numbers, an empty cell where identity does not apply")
    func speculativeRowsCSV() {
        var stats = SpeculativeStats(drafter: "suffix")
        stats.rounds = 10
        let row = SpeculativeBenchmarkRow(promptSet: "humaneval", setting: "suffix+cross", sampled: true, prompts: 2, generatedTokens: 256,
                                          decodeMilliseconds: 4000, tokensPerSecond: 64, speedup: 2.5, acceptanceRate: 0.9,
                                          meanAcceptedLength: 3.2, meanVerifyBatchSize: 4, identicalToPlain: nil, speculative: stats)
        let lines = SpeculativeBenchmarkRow.table([row]).csv.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3 && lines[2].isEmpty)
        #expect(lines[0].split(separator: ",").count == 13)
        #expect(lines[1] == "humaneval,suffix+cross,sampled,2,256,4000.0,64.00,2.500,0.9000,3.200,4.00,0.000,")
    }
}
