"""What several test modules build alike: the toy reversal task, synthetic corpora and mirrors, a local HTTP
server, and the tiny real-corpus run. Test modules import from here, never from each other
(tests/test_suite.py checks)."""
