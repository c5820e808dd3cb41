"""kcode.context"""
