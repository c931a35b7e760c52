import Testing

@testable import ArborEngine

@Suite("Xoshiro256StarStar")
struct SamplingRNGTests {
    @Test func splitMix64ReferenceVectors() {
        var s: UInt64 = 0
        let zero = (0..<4).map { _ in Xoshiro256StarStar.splitMix64(&s) }
        #expect(zero == [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F, 0xF88B_B8A8_724C_81EC])
        s = 1_234_567
        let other = (0..<5).map { _ in Xoshiro256StarStar.splitMix64(&s) }
        #expect(other == [6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423,
                          4_593_380_528_125_082_431, 16_408_922_859_458_223_821])
    }

    @Test func xoshiroReferenceVector() {
        var g = Xoshiro256StarStar(state: (1, 2, 3, 4))
        let out = (0..<6).map { _ in g.next() }
        #expect(out == [11520, 0, 1_509_978_240, 1_215_971_899_390_074_240, 1_216_172_134_540_287_360,
                        607_988_272_756_665_600])
    }

    /// Golden values pin the seeding scheme: a change here breaks reproducibility of every
    /// seeded generation, on every platform.
    @Test func seededGoldenValues() {
        var g0 = Xoshiro256StarStar(seed: 0)
        #expect((0..<3).map { _ in g0.next() } == [0x99EC_5F36_CB75_F2B4, 0xBF6E_1F78_4956_452A, 0x1A5F_849D_4933_E6E0])
        var g42 = Xoshiro256StarStar(seed: 42)
        #expect((0..<2).map { _ in g42.next() } == [0x1578_0B2E_0C2E_C716, 0x6104_D986_6D11_3A7E])
        var d = Xoshiro256StarStar(seed: 42)
        #expect(d.nextDouble() == Double(0x1578_0B2E_0C2E_C716 >> 11) * 0x1.0p-53)
        #expect(abs(d.nextDouble() - 0.3789802506626686) < 1e-16)
    }

    @Test func sameSeedSameSequenceDifferentSeedsDiffer() {
        var a = Xoshiro256StarStar(seed: 123)
        var b = Xoshiro256StarStar(seed: 123)
        var c = Xoshiro256StarStar(seed: 124)
        let sa = (0..<100).map { _ in a.next() }
        let sb = (0..<100).map { _ in b.next() }
        let sc = (0..<100).map { _ in c.next() }
        #expect(sa == sb)
        #expect(sa != sc)
        #expect(zip(sa, sc).filter { $0 == $1 }.isEmpty)
    }

    @Test func copyForksTheStream() {
        var a = Xoshiro256StarStar(seed: 9)
        _ = a.next()
        var b = a
        #expect(a.next() == b.next())
        #expect(a == b)
    }

    @Test func nextDoubleIsInUnitIntervalAndUniform() {
        var g = Xoshiro256StarStar(seed: 2024)
        let n = 100_000
        var sum = 0.0
        var buckets = [Int](repeating: 0, count: 10)
        for _ in 0..<n {
            let x = g.nextDouble()
            #expect(x >= 0 && x < 1)
            sum += x
            buckets[Int(x * 10)] += 1
        }
        #expect(abs(sum / Double(n) - 0.5) < 0.005)
        for b in buckets { #expect(abs(b - n / 10) < 500) }
    }

    @Test func worksAsRandomNumberGenerator() {
        var g = Xoshiro256StarStar(seed: 5)
        let x = Int.random(in: 0..<10, using: &g)
        #expect((0..<10).contains(x))
    }
}
