"""The learning loop's services: reviews in the chat, figures, exports for training and
blue/green promotion. The arithmetic lives in the pure `bot.core.review`; these wire it to the
stores, the chat and the model catalog."""
