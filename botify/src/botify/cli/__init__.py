"""Every command of botify; argparse lives only here, and nothing below imports it.

`botify COMMAND` (the console script) and `python -m botify COMMAND` dispatch to
botify.cli.main; `python -m botify.ab`, `.train`, `.evaluate` and `.lab` run the
same commands directly.
"""
