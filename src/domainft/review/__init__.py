"""`domainft review`: people read the generated pairs and accept, reject or edit them.

`journal.py` (the append-only record of decisions and how they apply to the splits) imports nothing heavy, so
datagen reads it; `web.py` (Starlette + uvicorn) is imported only by the `review` command.
"""
