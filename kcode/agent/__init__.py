"""kcode.agent"""
