"""Tokenizer conformance corpus: byte strings covering the cases where encoders differ.

Deterministic (seeded) so a failure reproduces; shared by the conformance test and the benchmark
script. Each entry is (name, bytes)."""
import random
import unicodedata

PROSE = (
    "The quick brown fox jumps over the lazy dog. It's a truth universally acknowledged that a "
    "single man in possession of a good fortune must be in want of a wife. We'll see; they've "
    "said they'd come, and I'm sure you're right.\n\nSection 2: Results (n=1,024; p<0.05)\n"
    "- item one\n- item two\n\tIndented with a tab.   Trailing spaces   \n"
)

CJK = "我们今天去公园散步，天气很好。東京は日本の首都です。ひらがなとカタカナ。한국어 문장도 있습니다。"

EMOJI = "Hello 👋🏽 world 🌍! Family: 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, keycap 1️⃣, heart ❤️‍🔥 ✨"


def _cases():
    c = []
    add = lambda name, s: c.append((name, s.encode("utf-8") if isinstance(s, str) else s))
    add("empty", "")
    add("hello", "hello world")
    add("prose", PROSE)
    add("nfc", unicodedata.normalize("NFC", "café naïve résumé Ångström ñandú Ελληνικά"))
    add("nfd", unicodedata.normalize("NFD", "café naïve résumé Ångström ñandú Ελληνικά"))
    add("nfkc_forms", "ﬁ ﬂ ① ㎏ Ｆｕｌｌｗｉｄｔｈ ｶﾀｶﾅ ½ x² ℌ")
    add("cjk", CJK)
    add("cjk_long_run", "中" * 3000)
    add("emoji", EMOJI)
    add("digits", "1 12 123 1234 12345 123456789012345678901234567890 3.14159 1,000,000 ٣٤٥ ०१२ ⅻ ½")
    add("whitespace_runs", "a  b   c    d\t\te\n\nf\n\n\n\ng \n \n  h\r\ni\r\n\r\nj     ")
    add("only_spaces", "        ")
    add("only_newlines", "\n\n\n\n")
    add("leading_spaces", "   leading and trailing   ")
    add("unicode_spaces", "a\u00a0b\u2003c\u3000d\u2028e\u2029f\u0085g\u180eh\u200bi\u202fj\u205fk\u1680l")
    add("contractions", "I'm you're he's she'd we've they'll it's don't can't won't")
    add("contractions_case", "I'M YOU'RE HE'S SHE'D WE'VE THEY'LL IT'S DON'T CAN'T Won'T wE'Ve")
    add("contractions_odd", "'s 'S 'ſ 'K 'k 'Ll 'lL ''s 's's x's''")
    add("curly_quotes", "It’s “quoted” ‘single’ — dash – en… ellipsis")
    add("bom_leading", "\ufeffHello with a byte-order mark")
    add("bom_inner", "word\ufeffword \ufeff \ufeff\ufeff")
    add("invalid_utf8", b"abc\xff\xfedef \xc3\x28 \xe2\x82 \xf0\x9f\x98 end \xed\xa0\x80 \xc0\xaf \x80\x80")
    add("invalid_tail", b"truncated \xe4\xb8")
    add("nul_and_controls", "a\x00b\x01c\x7fd\x1be[0m")
    add("code", "def f(x):\n    return x**2  # square\n\nif __name__ == '__main__':\n    print(f(3))\n")
    add("json", '{"key": [1, 2, 3], "nested": {"a": null, "b": true}, "s": "a\\nb"}')
    add("urls", "see https://example.com/path?q=1&x=y#frag and mailto:someone@example.org")
    add("punct_runs", "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}")
    add("mixed_scripts", "Русский текст, العربية, עברית, हिन्दी, ไทย, ქართული, Ελληνικά")
    add("combining", "e\u0301 a\u0308 o\u0302\u0323 Z\u0351\u0352\u0353 q\u0307")
    add("math", "∀x∈ℝ: x²≥0 ⇒ √(x²)=|x| ∑ᵢ aᵢ ≈ ∫f(x)dx ≠ ∞")
    add("rare_planes", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𐍈 𓀀 🀄 \U0002a6d6")
    # Special tokens of every model, inside text, adjacent, partial and mangled.
    specials = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n<think>\n</think>"
                "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>"
                "<bos><start_of_turn>user\nhey<end_of_turn>\n<s>[INST] hi [/INST]</s>"
                "<|start|>user<|message|>hi<|end|><|return|>")
    add("special_tokens", specials)
    add("special_tokens_spaced", " " + specials.replace("><", "> <") + " ")
    add("special_partial", "<|begin_of_text <|im_start <s <bos <｜User <|endoftext|x <|im_end|>>")
    add("special_repeated", "<|endoftext|>" * 5 + "<s><s></s>")
    add("tool_tags", "<tool_call>\n{\"name\": \"f\"}\n</tool_call><tool_response>ok</tool_response>")
    add("markup", "<html><body><div class=\"x\">text</div><br/></body></html>")
    add("spm_markers", "▁already▁has▁markers ▁ ▁▁ x▁")
    add("byte_fallback", "\U0001fae8\U0001fab7 \u0f3a\u17d2 \U000e0041 \ue000")
    add("long_word", "a" * 5000)
    add("long_digits", "9" * 4000)
    add("long_spaces", " " * 3000 + "x")
    rnd = random.Random(1337)
    alphabet = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n\t.,;:'\"!?-()")
                + list("éüßçøåñ中文日本語한국ΩЖж😀🚀\u200d\ufe0f\u00a0\u3000’"))
    for i in range(12):
        n = rnd.randint(20, 400)
        add(f"random_{i}", "".join(rnd.choice(alphabet) for _ in range(n)))
    add("very_long_prose", PROSE * 400)
    add("very_long_mixed", (PROSE + CJK + EMOJI + "\n") * 60)
    return c


CORPUS = _cases()
