"""kcode.vcs"""
