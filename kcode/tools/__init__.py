"""kcode.tools"""
