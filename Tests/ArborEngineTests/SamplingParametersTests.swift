import Foundation
import Testing

@testable import ArborEngine

@Suite("SamplingParameters")
struct SamplingParametersTests {
    @Test func defaultsMatchLlamaCpp() {
        let p = SamplingParameters()
        #expect(p.temperature == 0.8)
        #expect(p.topK == 40)
        #expect(p.topP == 0.95)
        #expect(p.minP == 0.05)
        #expect(p.repetitionPenalty == 1)
        #expect(p.repetitionLastN == 64)
        #expect(p.seed == 0)
        #expect(!p.isGreedy)
        #expect(!p.hasRepetitionPenalty)
    }

    @Test func greedyTurnsEverythingOff() throws {
        let g = SamplingParameters.greedy
        #expect(g.isGreedy)
        #expect(g.topK == 0 && g.topP == 1 && g.minP == 0 && g.repetitionPenalty == 1)
        try g.validate()
    }

    @Test func validRangesPass() throws {
        try SamplingParameters().validate()
        try SamplingParameters(temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, repetitionLastN: 0)
            .validate()
        try SamplingParameters(temperature: 5, topK: 1_000_000, topP: 1e-6, minP: 1, repetitionPenalty: 0.5,
                               repetitionLastN: 4096, seed: .max).validate()
    }

    @Test(arguments: [
        (SamplingParameters(temperature: -0.1), SamplingParametersError.invalidTemperature(-0.1)),
        (SamplingParameters(temperature: .infinity), .invalidTemperature(.infinity)),
        (SamplingParameters(topK: -1), .invalidTopK(-1)),
        (SamplingParameters(topP: 0), .invalidTopP(0)),
        (SamplingParameters(topP: -0.5), .invalidTopP(-0.5)),
        (SamplingParameters(topP: 1.01), .invalidTopP(1.01)),
        (SamplingParameters(minP: -0.01), .invalidMinP(-0.01)),
        (SamplingParameters(minP: 1.5), .invalidMinP(1.5)),
        (SamplingParameters(repetitionPenalty: 0), .invalidRepetitionPenalty(0)),
        (SamplingParameters(repetitionPenalty: -1), .invalidRepetitionPenalty(-1)),
        (SamplingParameters(repetitionLastN: -1), .invalidRepetitionLastN(-1)),
    ])
    func invalidValuesThrowTypedError(parameters: SamplingParameters, expected: SamplingParametersError) {
        #expect(throws: expected) { try parameters.validate() }
        #expect(throws: expected) { _ = try StandardSampler(parameters: parameters) }
        #expect(!expected.description.isEmpty)
    }

    @Test func nanIsRejected() {
        #expect(throws: SamplingParametersError.self) { try SamplingParameters(temperature: .nan).validate() }
        #expect(throws: SamplingParametersError.self) { try SamplingParameters(topP: .nan).validate() }
        #expect(throws: SamplingParametersError.self) { try SamplingParameters(minP: .nan).validate() }
        #expect(throws: SamplingParametersError.self) { try SamplingParameters(repetitionPenalty: .nan).validate() }
    }

    @Test func codableRoundTrip() throws {
        let p = SamplingParameters(temperature: 0.7, topK: 20, topP: 0.9, minP: 0.1, repetitionPenalty: 1.1,
                                   repetitionLastN: 128, seed: 0xDEAD_BEEF_CAFE_F00D)
        let data = try JSONEncoder().encode(p)
        #expect(try JSONDecoder().decode(SamplingParameters.self, from: data) == p)
    }

    @Test func partialJSONUsesDefaults() throws {
        let json = Data(#"{"temperature": 0, "seed": 7}"#.utf8)
        let p = try JSONDecoder().decode(SamplingParameters.self, from: json)
        var expected = SamplingParameters()
        expected.temperature = 0
        expected.seed = 7
        #expect(p == expected)
    }
}
