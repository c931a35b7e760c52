import ArborEngine
import ArborGGUF
import ArborTestSupport
import Foundation
import Testing

/// Chat rendering against the reference engine's `/apply-template` (fixture written by
/// scripts/fixtures/make_tokenizer_fixtures.py, stored with the tokenizer fixtures).
@Suite("Chat templates")
struct ChatTemplateTests {
    struct Chat: Decodable {
        let messages: [ChatMessage]
        let add_generation_prompt: Bool
        let prompt: String
    }

    struct Fixture: Decodable {
        let gemma3_template: String
        let chats: [String: [Chat]]
    }

    static let fixtureURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../ArborTokenizersTests/Fixtures/chat_templates.json").standardized

    static func fixture() throws -> Fixture {
        try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixtureURL))
    }

    @Test("renders exactly what the reference renders", arguments: ModelFiles.all)
    func matchesReference(alias: String) throws {
        try #require(ModelFiles.available(alias), "model \(alias) not found in \(ModelFiles.directory)")
        let f = try Self.fixture()
        let chats = try #require(f.chats[alias])
        let file = try GGUFFile(path: ModelFiles.path(alias))
        // gemma3-270m has no template of its own: the fixture used Gemma 3's instruction template.
        let text = try file.string(.chatTemplate) ?? f.gemma3_template
        let template = try ChatTemplate.detect(from: text)
        for chat in chats {
            let rendered = template.render(chat.messages, addGenerationPrompt: chat.add_generation_prompt)
            #expect(Array(rendered.utf8) == Array(chat.prompt.utf8), "\(alias) \(chat.messages)")
        }
    }

    @Test func detection() throws {
        #expect(try ChatTemplate.detect(from: Self.fixture().gemma3_template) == .gemma)
        let qwen = "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{{'<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>'}}"
        #expect(try ChatTemplate.detect(from: qwen) == .qwen2)
        let smol = "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'}}"
        #expect(try ChatTemplate.detect(from: smol) == .smolLM2)
        #expect(try ChatTemplate.detect(from: "{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n'}}") == .chatML(defaultSystemPrompt: nil))
        #expect(throws: ChatTemplateError.missingTemplate) { try ChatTemplate.detect(from: nil) }
        #expect(throws: ChatTemplateError.missingTemplate) { try ChatTemplate.detect(from: "  \n") }
        do {
            _ = try ChatTemplate.detect(from: "{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}")
            Issue.record("an unknown template was accepted")
        } catch {
            #expect(error.description.contains("raw prompt"))
            #expect(error.description.contains("[INST]"))
        }
    }

    @Test func rendering() {
        let chat = [ChatMessage(role: "system", content: "S"), ChatMessage(role: "user", content: " hi \n"),
                    ChatMessage(role: "assistant", content: "yo")]
        #expect(ChatTemplate.gemma.render(chat, addGenerationPrompt: true)
            == "<start_of_turn>user\nS\n\nhi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n<start_of_turn>model\n")
        #expect(ChatTemplate.qwen2.render(Array(chat.dropFirst()), addGenerationPrompt: false)
            == "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            + "<|im_start|>user\n hi \n<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n")
        #expect(ChatTemplate.smolLM2.render(chat, addGenerationPrompt: true)
            == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n hi \n<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>assistant\n")
        let json = try? JSONEncoder().encode(chat[1])
        #expect(json.flatMap { try? JSONDecoder().decode(ChatMessage.self, from: $0) } == chat[1])
    }
}
