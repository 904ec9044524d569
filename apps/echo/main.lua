-- echo: replies to every message of its mailbox with the same data.
--
--   aaax send echo '{"hello": "world"}' --wait 5000
--
-- The reply goes to the sender's mailbox, its corr set to the message's id.
-- The message is acknowledged when message() returns.

return {
  message = function (msg)
    aaax.reply(msg, msg.data)
  end,
}
