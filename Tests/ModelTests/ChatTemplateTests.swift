@testable import Model
import Testing

@Suite struct ChatTemplateTests {
    let system = ChatMessage(role: .system, content: "Be brief.")
    let user = ChatMessage(role: .user, content: " Hi! ")
    let assistant = ChatMessage(role: .assistant, content: "Hello.")
    let user2 = ChatMessage(role: .user, content: "2+2?")

    struct JinjaGolden: Decodable {
        struct Message: Decodable {
            var role: String
            var content: String
        }
        struct Case: Decodable {
            var messages: [Message]
            var addGenerationPrompt: Bool
            var rendered: String
        }
        var template: String
        var cases: [Case]
    }

    /// SmolLM2's own template text, rendered by jinja2 (scripts/make_golden_tokenizer.py).
    @Test func smolLM2TemplateRendersLikeJinja() throws {
        let golden = try Fixtures.load("smollm2_chat_template.json", as: JinjaGolden.self)
        let template = try ChatTemplate(jinja: golden.template)
        #expect(template == .chatML(defaultSystemPrompt: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        #expect(golden.cases.count == 8)
        for c in golden.cases {
            let messages = c.messages.map { ChatMessage(role: ChatMessage.Role(rawValue: $0.role)!, content: $0.content) }
            #expect(try template.render(messages, addGenerationPrompt: c.addGenerationPrompt) == c.rendered)
        }
    }

    @Test func llama2() throws {
        let rendered = try ChatTemplate.llama2.render([system, user, assistant, user2])
        // The template strips the whole first content, system block included: " Hi!" keeps its inner space.
        #expect(rendered == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi! [/INST] Hello. </s><s>[INST] 2+2? [/INST]")
        #expect(try ChatTemplate.llama2.render([user]) == "<s>[INST] Hi! [/INST]")
        // Python strips the system block and an empty first content as one string.
        let blank = ChatMessage(role: .user, content: " \n")
        #expect(try ChatTemplate.llama2.render([system, blank]) == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>> [/INST]")
        expectModelError({ _ = try ChatTemplate.llama2.render([user, user2]) }) {
            $0.description.contains("alternate")
        }
        expectModelError({ _ = try ChatTemplate.llama2.render([assistant]) }) { $0.description.contains("alternate") }
    }

    @Test func llama3() throws {
        let rendered = try ChatTemplate.llama3.render([system, user])
        #expect(rendered == "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        #expect(ChatTemplate.llama3.endOfTurn == "<|eot_id|>")
    }

    @Test func mistral() throws {
        let rendered = try ChatTemplate.mistral.render([user, assistant, user2])
        #expect(rendered == "<s>[INST]  Hi!  [/INST]Hello.</s>[INST] 2+2? [/INST]")
        #expect(try ChatTemplate.mistral.render([system, user2]) == "<s>[INST] Be brief.\n\n2+2? [/INST]")
    }

    @Test func recognizesTemplatesByTheirMarkers() throws {
        #expect(try ChatTemplate(jinja: "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}")
            == .chatML(defaultSystemPrompt: nil))
        #expect(try ChatTemplate(jinja: "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}{% endif %}")
            == .chatML(defaultSystemPrompt: "You are Qwen."))
        #expect(try ChatTemplate(jinja: "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}") == .llama3)
        #expect(try ChatTemplate(jinja: "{{ bos_token + '[INST] ' + '<<SYS>>\\n' }}") == .llama2)
        #expect(try ChatTemplate(jinja: "{{ bos_token }}{{ '[INST] ' + message['content'] + ' [/INST]' }}") == .mistral)
        #expect(try ChatTemplate(name: "LLAMA3") == .llama3)
    }

    @Test func unknownTemplatesAreClearErrors() {
        expectModelError({ _ = try ChatTemplate(jinja: "<start_of_turn>user\n{{ message['content'] }}<end_of_turn>") }) {
            guard case let .unknownChatTemplate(excerpt, supported) = $0 else { return false }
            return excerpt?.hasPrefix("<start_of_turn>") == true && supported == ChatTemplate.supportedNames
        }
        expectModelError({ _ = try ChatTemplate(jinja: nil) }) { $0.description.contains("no chat template") }
        expectModelError({ _ = try ChatTemplate(name: "gemma") }) { $0.description.contains("chatml, llama2, llama3, mistral") }
    }
}
