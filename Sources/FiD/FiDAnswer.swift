// FiDAnswer: a generated answer's text as FiD's scripts write it.
import Foundation
import Tokenizers

/// FiD decodes answers with transformers 3.0.2's `tokenizer.decode(ids, skip_special_tokens=True)`,
/// whose `clean_up_tokenization_spaces` (on by default) then removes the space before `. ? ! ,`
/// and inside English contractions (fid-spec §3.4): "Carol Channing 's" becomes "Carol
/// Channing's", which exact match normalises to "carol channings", not "carol channing s".
/// transformers 4 turned the cleanup off by default for this tokenizer; fidq follows FiD.
public enum FiDAnswer {
    /// The answer `ids` (start token first, as generation returns them) as FiD's text.
    public static func text(_ tokenizer: any Tokenizer, _ ids: [Int32]) -> String {
        cleanUp(tokenizer.decode(ids, skipSpecialTokens: true))
    }

    /// transformers 3.0.2's `clean_up_tokenization` (`TextCleanup.transformers302`).
    static func cleanUp(_ text: String) -> String {
        String(decoding: TextCleanup.apply(TextCleanup.transformers302, to: Array(text.utf8)), as: UTF8.self)
    }
}
