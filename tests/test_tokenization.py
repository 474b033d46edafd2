import tensorflow as tf

from mtl_keras.datasets.tokenization import build_vocabulary, split_graph, standardize_graph, tokenize
from mtl_keras.datasets.vader import read_vader


def graph_tokens(texts):
    return [[t.decode("utf-8") for t in row] for row in split_graph(standardize_graph(tf.constant(texts))).to_list()]


def test_tokens_keep_sentiment_cues():
    assert tokenize("I don't LIKE it!!! :-( &lt;3 #fail @bob http://x.co/a 3.5") == [
        "i", "don't", "like", "it", "!!!", ":-(", "<3", "#fail", "@bob", "http://x.co/a", "3.5"]


def test_graph_and_nltk_agree_on_tricky_text():
    texts = ["Café ÉTÉ naïve\u00a0—\u2003ok\tgo\nnow", "", "   ", "a\x1cb", "ÇA VA?!", "x'y'z '' ..."]
    assert graph_tokens(texts) == [tokenize(t) for t in texts]


def test_graph_and_nltk_agree_on_the_whole_corpus():
    texts, _, _ = read_vader()
    assert graph_tokens(list(texts)) == [tokenize(t) for t in texts]


def test_vocabulary_is_deterministic_and_sized_like_keras():
    texts = ["b a a", "c b a", "d"]
    assert build_vocabulary(texts) == ["a", "b", "c", "d"]
    assert build_vocabulary(texts, max_tokens=4) == ["a", "b"]  # 2 slots go to padding and OOV
    assert build_vocabulary(texts, min_count=2) == ["a", "b"]
