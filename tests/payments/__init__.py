"""Payment providers: the contract, the till, the sandbox PSP and the Stripe adapter."""
