"""Talk to the model: one question, an interactive loop, or a questions file -> results.json.

    model.py     ChatSettings (the recipe's system prompt and sampling), the ChatModel interface, Answer
    backends.py  GGUFChat (llama-cpp-python), HFChat (transformers + PEFT), load_chat_model
    think.py     R1-style `<think>` blocks, shown or hidden (`think`)
    ask.py       one question -> Answer, with --rag's passages before it
    batch.py     a questions file -> results.json
    session.py   `domainft chat` (main, the interactive loop) and `domainft run`'s final answer
"""

from .ask import Rag, ask, sources_text
from .backends import GGUFChat, HFChat, exported_gguf, load_chat_model
from .batch import Question, read_questions, run_batch
from .model import Answer, Backend, ChatModel, ChatSettings, Think
from .session import final_answer, interactive, main, sample_question
from .think import ThinkFilter, split_think

__all__ = [
    "Answer", "Backend", "ChatModel", "ChatSettings", "GGUFChat", "HFChat", "Question", "Rag", "Think", "ThinkFilter",
    "ask", "exported_gguf", "final_answer", "interactive", "load_chat_model", "main", "read_questions", "run_batch",
    "sample_question", "sources_text", "split_think",
]
