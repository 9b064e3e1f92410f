"""The parity corpus: strings every tokenizer fixture is checked on (encode ids, decode text).

Kept in one module so the reference maker and the GLM-5-style trainer use the same text.
"""

CORPUS = [
    # empty and tiny
    "", " ", "a", "\n", "\t", "  ", "\r\n", "hello", "Hello world", " Hello world",
    "hello  world", "hello   world   ", "The quick brown fox jumps over the lazy dog.",
    # contractions and casing
    "I'm sure you're right, he'll see it's fine; we've done what we'd said.",
    "DON'T SHOUT, YOU'RE LOUD. I'LL GO. It'S mIxEd.",
    "rock'n'roll isn't 'quoted' text",
    # whitespace runs and newlines
    "a\n\nb", "line1\r\nline2\r\n", "tabs\there\t\tand\t\t\tthere", "   leading spaces",
    "trailing spaces   ", "\n\n\n", "mixed \t \n \r\n  whitespace", "x" + " " * 40 + "y",
    "\u00a0non-breaking\u00a0space", "\u3000ideographic space", "end\n",
    # numbers
    "1", "12", "123", "1234", "12345678901234567890", "3.14159 2.71828 -42 +7",
    "version 1.2.3-rc4", "$1,234.56 and 99%", "0x1F 0b1010 1e-9", "٣٤٥ ١٢ (Arabic-Indic digits)",
    "١٢٣٤٥", "Ⅻ roman numeral and ½ fraction", "2026-11-27T15:22:08Z",
    # code
    "def f(x):\n    return x * 2\n",
    "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "const xs = [1, 2, 3].map((x) => x ** 2); // squares",
    "<html><body class=\"main\">Hi &amp; bye</body></html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))",
    "    if (x) {\n        y();\n    }\n",
    "{\"key\": \"value\", \"n\": [1, 2.5, null, true]}",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "path/to/file_name.txt C:\\Windows\\System32",
    "x=1;y=2;;z===3!==4&&5||6",
    "__init__ __name__ self._private snake_case camelCase PascalCase",
    # CJK
    "你好，世界！", "我们今天去公园散步吧。", "日本語のテキストです。ひらがなとカタカナ。",
    "東京タワーは高い", "한국어 텍스트입니다.", "中文English混合text测试123",
    "漢字かなカナ漢字", "。，、；：？！",
    # Cyrillic
    "Привет, мир!", "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "ПРОПИСНЫЕ и строчные", "Україна, Київ, ґанок", "Здравей свят",
    # Arabic and Hebrew
    "مرحبا بالعالم", "اللغة العربية جميلة جداً.", "שלום עולם", "abc مرحبا def",
    # Devanagari and other Indic
    "नमस्ते दुनिया", "हिन्दी भाषा में पाठ", "ক্ষমা করবেন", "தமிழ் மொழி",
    # Greek, Latin accents, combining marks
    "Γειά σου Κόσμε", "ΣΊΣΥΦΟΣ ὀδυσσεύς", "café naïve résumé façade", "Ångström Øresund Ærø",
    "e\u0301 (e + combining acute)", "ﬁ ligature ＦＵＬＬＷＩＤＴＨ ｶﾀｶﾅ", "Straße ß ẞ",
    "İstanbul ıi Iı", "Ⓐⓑⓒ ①②③ ㍿",
    # emoji incl. ZWJ sequences, flags, skin tones, variation selectors
    "😀", "I ❤️ NY", "👨‍👩‍👧‍👦 family", "👩🏽‍💻 coder", "🏳️‍🌈 flag", "🇯🇵🇺🇸🇩🇪",
    "emoji at end 🎉", "🎉🎉🎉", "thumbs 👍🏻👍🏿", "❤\ufe0f vs ❤", "🧑‍🤝‍🧑", "a😀b😀c",
    # symbols, punctuation, rare characters
    "€£¥₹₿", "“smart quotes” and ‘single’ — em dash – en dash…", "©®™§¶†‡•",
    "∀x∈ℝ: x²≥0 ∑∫√∞", "→ ← ↑ ↓ ⇒ ⇔", "\u200b zero width \u200d joiner \ufeff bom",
    "tab\u000bvtab\u000cff", "\u0085 next line", "\u2028line separator\u2029para",
    "a" * 300, "ab" * 100, "!!!???...,,,", "----====____", "*** bold *** __ital__",
    # special tokens of the fixtures, inside text
    "<|endoftext|>", "<|user|>hi", "[gMASK]<sop><|system|>You are helpful.<|user|>Hello<|assistant|>",
    "<|assistant|><think>Let me think.</think>The answer is 4.",
    "text before <|endoftext|> and after", "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
    "<|observation|><tool_response>{\"temp\": 21}</tool_response>", "<|user|> spaced <|assistant|> ",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>", "<EOT> <META> claude tokens",
    "almost special <|user| and <|endoftext", "<<|user|>>", "<|user|><|user|><|user|>",
    "<s> </s> <unk> <pad> [CLS] [SEP]",
    # added-token flags of the feature fixtures (lstrip, rstrip, single_word, normalized)
    "a  <mask>  b", "x   <both>   y <both>", "[flag]   z [flag]\n\nnext", "a word, words, sword, word_x, word!",
    "word", "say hello, HELLO, Hello!", "<mask><mask> <mask>",
    # mixed paragraphs
    "The café served 3 crêpes, 2 croissants & 1 ☕ for €12.50 — 東京 style! 🎉",
    "Email me at someone@example.com or visit https://example.org/path?q=1&r=2#frag",
    "In 2024, GPT-4o and Llama-3.1-405B were released; GLM-5 followed.",
    "Q: What's 2+2?\nA: 4.\n\nQ: And 10/3?\nA: ≈3.333…",
    "Markdown:\n# Title\n\n- item 1\n- item 2\n\n```python\nprint('hi')\n```\n",
]

# Longer multilingual passages, used to train the GLM-5-style fixture so it learns merges outside ASCII.
PASSAGES = [
    "机器学习是人工智能的一个分支。它使用数据和算法来模仿人类的学习方式，逐步提高其准确性。"
    "深度学习是机器学习的一个子集，它使用多层神经网络。自然语言处理让计算机理解人类语言。",
    "日本語の文章は、漢字、ひらがな、カタカナを組み合わせて書かれます。東京は日本の首都です。"
    "今日はとても良い天気ですね。明日も晴れるでしょう。",
    "Машинное обучение — это раздел искусственного интеллекта. Москва является столицей России. "
    "Сегодня хорошая погода, и мы идём гулять в парк.",
    "التعلم الآلي هو فرع من فروع الذكاء الاصطناعي. القاهرة هي عاصمة مصر. الطقس جميل اليوم.",
    "मशीन लर्निंग कृत्रिम बुद्धिमत्ता की एक शाखा है। दिल्ली भारत की राजधानी है। आज मौसम अच्छा है।",
    "한국어는 한글로 씁니다. 서울은 대한민국의 수도입니다. 오늘 날씨가 좋습니다.",
    "Η μηχανική μάθηση είναι κλάδος της τεχνητής νοημοσύνης. Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
]


def random_strings(count=200, seed=20261127):
    """Random mixes of scripts, whitespace, marks, emoji and special-token texts (fuzz-style cases)."""
    import random

    rng = random.Random(seed)
    pools = ["abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
             " \t\n\r\u00a0\u3000\u2028\u0085\u000b\u000c", "'\".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`",
             "你好世界中文日本語のテキストカタカナ한국어", "Приветмирёъ", "مرحبابالعالم", "नमस्तेदुनिया",
             "😀👍🏽❤️‍🔥👨‍👩‍👧\u200d\ufe0f🇯🇵", "éèêëçñüöäßœæøåİıΣσς", "\u0301\u0308\u0327", "①²½Ⅻ٣", "ﬁＡｶ㍿"]
    specials = ["<|user|>", "<|endoftext|>", "<mask>", "[flag]", "word", "hello", "<both>", "<s>", "</s>",
                "<|begin_of_text|>", "<｜end▁of▁sentence｜>", "<EOT>", "'s", "'ll"]
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randrange(0, 60)):
            r = rng.random()
            if r < 0.05:
                parts.append(rng.choice(specials))
            elif r < 0.1:
                parts.append(" " * rng.randrange(1, 6))
            else:
                parts.append(rng.choice(rng.choice(pools)))
        out.append("".join(parts))
    return out
