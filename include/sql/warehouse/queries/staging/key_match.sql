({left}) = ({right})
